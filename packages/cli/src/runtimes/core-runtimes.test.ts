import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {Config} from '@oclif/core'
import {afterAll, describe, expect, it} from 'vitest'
import {coreRuntimeHooks, runCoreRuntimeHooks} from './core-runtimes.js'
import {loadRuntimes, type RuntimeRegistry} from './registry.js'

// Needs the plugins built (npm run build): their hooks are their dist files, as oclif loads them.
const CLI_ROOT = fileURLToPath(new URL('../..', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'agent-core-runtimes-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))

const summary = (r: RuntimeRegistry) => ({
  runtimes: r.runtimes.map((x) => ({plugin: x.plugin, language: x.runtime.language, aliases: x.runtime.aliases, env: x.runtime.env, hello: x.runtime.hello, versions: x.runtime.versions.map((v) => v.id)})),
  broken: r.broken,
  conflicts: r.conflicts,
})

/** A CLI root with package.json listing `plugins`, each given as [name, hook source or undefined]. */
function fakeCli(name: string, plugins: [string, string | undefined][]): string {
  const root = join(dir, name)
  mkdirSync(root, {recursive: true})
  writeFileSync(join(root, 'package.json'), JSON.stringify({name: 'fake-cli', version: '1.0.0', oclif: {plugins: plugins.map(([n]) => n)}}))
  for (const [n, hook] of plugins) {
    const p = join(root, 'node_modules', n)
    mkdirSync(p, {recursive: true})
    writeFileSync(join(p, 'package.json'), JSON.stringify({name: n, version: '2.0.0', type: 'module', oclif: hook === undefined ? {} : {hooks: {'agent:runtimes': './hook.js'}}}))
    if (hook !== undefined) writeFileSync(join(p, 'hook.js'), hook)
  }
  return root
}

describe('core runtimes without oclif (the fast path)', () => {
  it('finds the same plugins and runtimes as oclif\'s hook run', async () => {
    const hooks = coreRuntimeHooks(CLI_ROOT)
    expect(hooks?.map((h) => h.plugin.name).sort()).toEqual(['@agent/runtime-golang', '@agent/runtime-node', '@agent/runtime-python', '@agent/runtime-ruby'])
    const ours = await runCoreRuntimeHooks(hooks!)
    const oclifs = await loadRuntimes(await Config.load(CLI_ROOT))
    expect(summary(ours)).toEqual(summary(oclifs))
    expect(ours.runtimes.length).toBe(4)
  })

  it('a hook that throws, or returns a bad declaration, marks its plugin broken; the others still count', async () => {
    const root = fakeCli('broken', [
      ['agent-runtime-throws', "export default async () => { throw new Error('no luck') }\n"],
      ['agent-runtime-bad', "export default async () => ({language: ''})\n"],
      ['agent-runtime-none', "export const notDefault = 1\n"],
      ['plugin-without-hooks', undefined],
    ])
    const reg = await runCoreRuntimeHooks(coreRuntimeHooks(root)!)
    expect(reg.runtimes).toEqual([])
    expect(reg.broken.map((b) => b.plugin)).toEqual([
      {name: 'agent-runtime-throws', version: '2.0.0', type: 'core'},
      {name: 'agent-runtime-none', version: '2.0.0', type: 'core'},
      {name: 'agent-runtime-bad', version: '2.0.0', type: 'core'},
    ])
    expect(reg.broken[0]!.error).toMatch(/no luck/)
  })

  it('anything not where oclif would find it: undefined, so the caller goes through oclif', () => {
    const missing = fakeCli('missing', [])
    writeFileSync(join(missing, 'package.json'), JSON.stringify({name: 'fake-cli', oclif: {plugins: ['not-installed']}}))
    expect(coreRuntimeHooks(missing)).toBeUndefined()
    const noFile = fakeCli('no-file', [['agent-runtime-x', 'export default () => []\n']])
    rmSync(join(noFile, 'node_modules', 'agent-runtime-x', 'hook.js'))
    expect(coreRuntimeHooks(noFile)).toBeUndefined()
    const odd = fakeCli('odd-name', [])
    writeFileSync(join(odd, 'package.json'), JSON.stringify({oclif: {plugins: ['../../etc']}}))
    expect(coreRuntimeHooks(odd)).toBeUndefined()
    expect(coreRuntimeHooks(join(dir, 'no-such-cli'))).toBeUndefined()
  })
})
