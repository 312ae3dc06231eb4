import {spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {openVmRepository} from './state/vm-repository.js'
import {vmRecord} from './state/vm-record.js'

// Start-up cost is mostly module loading (bench/REPORT.md): each command must load only what it
// uses. This runs the built CLI (dist/, as `agent` does) with a preload that records every module
// the process loads: ESM through a loader hook's `load`, CommonJS from require.cache at exit.
const bin = fileURLToPath(new URL('../bin/run.js', import.meta.url))
const dist = fileURLToPath(new URL('../dist/commands/vm/list.js', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'agent-imports-'))
const preload = join(dir, 'trace.mjs')
const stateDir = join(dir, 'state')

writeFileSync(
  preload,
  `import {register, createRequire} from 'node:module'
import {appendFileSync, writeFileSync} from 'node:fs'
const out = process.env.AGENT_TRACE_OUT
writeFileSync(out, '')
const hook = \`import {appendFileSync} from 'node:fs'
let out
export function initialize(d) { out = d.out }
export async function load(url, context, next) { appendFileSync(out, url + '\\\\n'); return next(url, context) }\`
register('data:text/javascript,' + encodeURIComponent(hook), {parentURL: import.meta.url, data: {out}})
const req = createRequire(import.meta.url)
process.on('exit', () => appendFileSync(out, Object.keys(req.cache).map((f) => 'file://' + f).join('\\n') + '\\n'))
`,
)

/** The files (as paths) that `agent <argv>` loaded, and how it ended. */
function loaded(argv: string[], env: Record<string, string> = {}): {files: string[]; status: number | null; stdout: string; stderr: string} {
  const out = join(dir, `trace-${argv.join('_').replace(/\W+/g, '_')}.txt`)
  const r = spawnSync(process.execPath, ['--import', preload, bin, ...argv], {
    env: {...process.env, AGENT_STATE_DIR: stateDir, AGENT_TRACE_OUT: out, AGENT_LOG_LEVEL: 'info', AGENT_LOG_FILE: '', AGENT_DATA_DIR: join(dir, 'data'), ...env},
    encoding: 'utf8',
    timeout: 60_000,
  })
  const files = [...new Set(readFileSync(out, 'utf8').split('\n').filter(Boolean).map((u) => u.replace(/^file:\/\//, '')))]
  return {files, status: r.status, stdout: r.stdout, stderr: r.stderr}
}

const pkg = (files: string[], name: string) => files.filter((f) => f.includes(`/node_modules/${name}/`))

beforeAll(async () => {
  if (!existsSync(dist)) throw new Error('packages/cli/dist is not built: run `npm run build` first')
  // Two VMs the fan-out can be asked about (stopped: nothing is run, each fails on its own).
  const repo = await openVmRepository(join(stateDir, 'agent.db'))
  for (const id of ['python-0000000a', 'python-0000000b']) await repo.insert(vmRecord({id, plugin: 'test@0', image: 'img', imageSource: 'flag', launcher: 'runc', status: 'stopped'}))
  await repo.close()
})
afterAll(() => rmSync(dir, {recursive: true, force: true}))

describe('import graph', () => {
  it('the tracer sees both ESM and CommonJS loads (else the checks below prove nothing)', () => {
    const {files} = loaded(['vm', 'list', '--all'], {AGENT_FAST_PATH: 'off'})
    expect(files.some((f) => f.endsWith('/node_modules/sqlite3/lib/sqlite3-binding.js'))).toBe(true) // CommonJS, required by CommonJS
    expect(files.some((f) => f.endsWith('/dist/commands/vm/list.js'))).toBe(true) // ESM
    expect(files.some((f) => f.endsWith('/dist/vendor/oclif-core.js'))).toBe(true) // oclif, bundled by npm run build
  })

  it('agent --version loads no TypeORM, sqlite3, listr2, winston or execa, and not even oclif', () => {
    const {files, status} = loaded(['--version'])
    expect(status).toBe(0)
    for (const name of ['typeorm', 'sqlite3', 'listr2', 'winston', 'execa', '@oclif/core']) expect(pkg(files, name), name).toEqual([])
  })

  it('agent --version prints exactly what oclif prints (its userAgent)', async () => {
    const {Config} = await import('@oclif/core')
    const config = await Config.load(fileURLToPath(new URL('..', import.meta.url)))
    const {stdout, status} = loaded(['--version'])
    expect(status).toBe(0)
    expect(stdout).toBe(`${config.userAgent}\n`)
  })

  it('with a user plugin installed, agent --version goes through oclif (whose init hooks may run), same line', async () => {
    const data = join(dir, 'data-with-plugin')
    mkdirSync(data, {recursive: true})
    writeFileSync(join(data, 'package.json'), JSON.stringify({private: true, oclif: {schema: 1, plugins: [{name: 'agent-runtime-none', type: 'user', tag: 'latest'}]}, dependencies: {}}))
    const fast = loaded(['--version'])
    const slow = loaded(['--version'], {AGENT_DATA_DIR: data})
    expect(slow.status, slow.stderr).toBe(0)
    expect(slow.files.some((f) => f.endsWith('/dist/vendor/oclif-core.js'))).toBe(true)
    expect(slow.stdout).toBe(fast.stdout)
  })

  it('agent vm list on a state dir whose schema is current loads no TypeORM (only a pending migration does)', () => {
    const {files, status, stderr} = loaded(['vm', 'list', '--all'])
    expect(status, stderr).toBe(0)
    expect(pkg(files, 'typeorm')).toEqual([])
    const fresh = loaded(['vm', 'list'], {AGENT_STATE_DIR: join(dir, 'fresh-state')})
    expect(fresh.status, fresh.stderr).toBe(0)
    expect(pkg(fresh.files, 'typeorm').length).toBeGreaterThan(0) // a new database: migrations run
  })

  it('a command loads oclif and execa as one bundled file each (scripts/bundle.mjs), not their hundreds of modules', () => {
    const {files, status, stderr} = loaded(['vm', 'list', '--all'], {AGENT_FAST_PATH: 'off'})
    expect(status, stderr).toBe(0)
    for (const name of ['@oclif/core', 'execa', 'semver', 'cross-spawn']) expect(pkg(files, name), name).toEqual([])
    expect(files.filter((f) => f.includes('/node_modules/')).length).toBeLessThan(10) // sqlite3's native loader
  })

  it("the bundled oclif's V8 code cache is accepted by this node, and a cache made from other bytes is never used", async () => {
    const {createRequire, default: Module} = await import('node:module')
    const vm = await import('node:vm')
    const vendor = fileURLToPath(new URL('../dist/vendor/', import.meta.url))
    const src = readFileSync(join(vendor, 'oclif-core.cjs'), 'utf8')
    const cache = readFileSync(join(vendor, 'oclif-core.cjs.cache'))
    const script = new vm.Script(Module.wrap(src), {filename: join(vendor, 'oclif-core.cjs'), cachedData: cache.subarray(32)})
    expect(script.cachedDataRejected).toBe(false)
    // V8 checks only a cache's source length: two sources of one length, A's cache beside B.
    const {loadVendor} = createRequire(import.meta.url)(join(vendor, 'load.cjs'))
    const a = join(dir, 'a.cjs')
    const b = join(dir, 'b.cjs')
    writeFileSync(a, "module.exports = {v: (() => 'AAAA')()}\n")
    writeFileSync(b, "module.exports = {v: (() => 'BBBB')()}\n")
    const warm = loadVendor(a, {warm: true})
    expect(warm.exports.v).toBe('AAAA')
    warm.save()
    writeFileSync(`${b}.cache`, readFileSync(`${a}.cache`))
    expect(loadVendor(b).v).toBe('BBBB')
    expect(loadVendor(a).v).toBe('AAAA')
  })

  it('agent vm list loads no listr2, no winston file transport, no image builder', () => {
    const {files, status} = loaded(['vm', 'list', '--all'])
    expect(status).toBe(0)
    expect(pkg(files, 'listr2')).toEqual([])
    expect(files.filter((f) => f.includes('/winston/lib/winston/transports/file'))).toEqual([])
    expect(files.filter((f) => /\/dist\/(images\/resolve|images\/base-image|services\/fanout)\.js$/.test(f))).toEqual([])
  })

  it('vm list, and vm exec and vm run on one VM, run without oclif (src/cli/local-command.ts): the same bytes and exit code as through oclif', () => {
    const cases = [
      ['vm', 'list'],
      ['vm', 'list', '--all'],
      ['vm', 'list', '--status', 'stopped'],
      ['vm', 'exec', '--vm', 'python-0000000a', '--cmd', 'true'], // stopped
      ['vm', 'exec', '--vm', 'python-0000000a', '--hello'],
      ['vm', 'run', '--vm', 'python-0000000b', '--', 'python3', '-V'],
      ['vm', 'exec', '--vm', 'nope-00000000', '-e', 'A=1', '--', 'true'], // no such VM
      ['vm', 'exec', '--vm', 'python-0000000a', '-e', 'not-an-assignment', '--cmd', 'true'], // a usage error
    ]
    for (const argv of cases) {
      const fast = loaded(argv)
      const oclif = loaded(argv, {AGENT_FAST_PATH: 'off'})
      expect(fast.files.some((f) => f.endsWith('/dist/vendor/oclif-core.js')), `${argv.join(' ')}: fast path`).toBe(false)
      expect(oclif.files.some((f) => f.endsWith('/dist/vendor/oclif-core.js')), `${argv.join(' ')}: oclif`).toBe(true)
      expect({status: fast.status, stdout: fast.stdout, stderr: fast.stderr}, argv.join(' ')).toEqual({status: oclif.status, stdout: oclif.stdout, stderr: oclif.stderr})
    }
    // The list is really there, and the failures are the ones meant.
    expect(loaded(['vm', 'list', '--all']).stdout).toMatch(/^python-0000000a\s/m)
    expect(loaded(cases[3]!).status).not.toBe(0)
    expect(loaded(cases[7]!).status).toBe(2)
  })

  it('what the fast path does not take goes through oclif: --json, log settings, -i, several VMs, bad flags', () => {
    const cases: [string[], Record<string, string>][] = [
      [['vm', 'list', '--json'], {}],
      [['vm', 'list'], {AGENT_LOG_LEVEL: 'debug'}],
      [['vm', 'list'], {AGENT_LOG_FILE: join(dir, 'log.json')}],
      [['vm', 'exec', '-i', '--vm', 'python-0000000a', '--cmd', 'true'], {}],
      [['vm', 'exec', '--vm', 'python-0000000a', '--vm', 'python-0000000b', '--cmd', 'true'], {}],
      [['vm', 'exec', '--vm', 'python-0000000a', '--timeout', 'soon', '--cmd', 'true'], {}],
      [['vm', 'list', '--help'], {}],
    ]
    for (const [argv, env] of cases) {
      const r = loaded(argv, env)
      expect(r.files.some((f) => f.endsWith('/dist/vendor/oclif-core.js')), argv.join(' ')).toBe(true)
    }
  })

  it('only vm exec with several VMs loads listr2', () => {
    const one = loaded(['vm', 'exec', '--vm', 'python-0000000a', '--cmd', 'true'])
    expect(one.status, one.stderr).not.toBe(0) // the VM is stopped
    expect(pkg(one.files, 'listr2')).toEqual([])
    const several = loaded(['vm', 'exec', '--vm', 'python-0000000a', '--vm', 'python-0000000b', '--cmd', 'true'])
    expect(several.status, several.stderr).toBe(6) // each VM fails on its own
    expect(pkg(several.files, 'listr2').length).toBeGreaterThan(0)
  })
})
