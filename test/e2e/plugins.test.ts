import {execa} from 'execa'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {agentIn, tempState} from '../helpers/agent.js'

// Each test gets its own oclif data dir, so installed plugins never leak between tests or into the user's.
function isolated() {
  const st = tempState('agent-plugins-')
  const xdg = mkdtempSync(join(tmpdir(), 'agent-xdg-'))
  const env = {
    ...st.env,
    XDG_DATA_HOME: join(xdg, 'data'),
    XDG_CACHE_HOME: join(xdg, 'cache'),
    XDG_CONFIG_HOME: join(xdg, 'config'),
    // The npm registry is unreachable for everything below: plugins must install offline.
    npm_config_registry: 'http://127.0.0.1:9/',
    npm_config_offline: 'false',
  }
  return {st, xdg, env, a: agentIn(env), cleanup: () => (st.cleanup(), rmSync(xdg, {recursive: true, force: true}))}
}

/** Writes a runtime plugin by hand: plain ESM, no dependencies, one hook. */
function writePlugin(dir: string, name: string, hookBody: string, containerfile = 'FROM localhost/agent/debian:bookworm\n') {
  mkdirSync(join(dir, 'hooks'), {recursive: true})
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({name, version: '1.2.3', type: 'module', files: ['hooks', 'Containerfile'], oclif: {hooks: {'agent:runtimes': './hooks/runtimes.js'}}}),
  )
  writeFileSync(join(dir, 'hooks', 'runtimes.js'), `import {fileURLToPath} from 'node:url'\nconst recipe = fileURLToPath(new URL('../Containerfile', import.meta.url))\n${hookBody}\n`)
  writeFileSync(join(dir, 'Containerfile'), containerfile)
  return dir
}

const perlHook = `export default async function () {
  return {
    language: 'perl', aliases: ['pl'], image: 'docker.io/library/perl:5-slim', recipe,
    hello: ['perl', '-e', 'print "hello from perl $^V\\\\n"'],
    version: ['perl', '-v'],
    fileRun: {'.pl': ['perl', '{file}']},
  }
}`

const cleanups: Array<() => void> = []
afterAll(() => cleanups.forEach((c) => c()))

describe('runtime plugins', () => {
  // The perl recipe stays FROM localhost/agent/debian:bookworm: a plugin written before the base
  // moved to trixie keeps working, the core builds the bookworm base for it.
  it('installs a brand-new perl runtime from a tarball with npm unreachable, runs it in a VM, and uninstalls it', async () => {
    const t = isolated()
    cleanups.push(t.cleanup)
    const dir = writePlugin(join(t.xdg, 'src', 'agent-runtime-perl'), 'agent-runtime-perl', perlHook)
    const pack = await execa('npm', ['pack', '--silent', '--pack-destination', t.xdg], {cwd: dir, env: t.env})
    const tarball = join(t.xdg, pack.stdout.trim().split('\n').pop()!)

    const inst = await t.a(['plugins', 'install', `file:${tarball}`])
    expect(inst.code, inst.stderr).toBe(0)
    const list = await t.a(['runtimes', '--json'])
    const perl = JSON.parse(list.stdout).runtimes.find((r: {language: string}) => r.language === 'perl')
    expect(perl).toMatchObject({language: 'perl', aliases: ['pl'], plugin: 'agent-runtime-perl@1.2.3', pluginType: 'user'})

    const build = await t.a(['image', 'build', 'perl', '--json'])
    expect(build.code, build.stderr).toBe(0)
    expect(JSON.parse(build.stdout)).toMatchObject({image: 'localhost/agent/perl:latest', version: null, base: 'localhost/agent/debian:bookworm'})
    const create = await t.a(['vm', 'create', '--language', 'perl'])
    expect(create.code, create.stderr).toBe(0)
    const id = create.stdout.trim()
    expect(id).toMatch(/^perl-[0-9a-f]{8}$/)
    const hello = await t.a(['vm', 'exec', '--vm', id, '--hello'])
    expect(hello.code, hello.stderr).toBe(0)
    expect(hello.stdout).toMatch(/^hello from perl v5\.\d+/)
    expect((await t.a(['vm', 'clean', id])).code).toBe(0)

    const un = await t.a(['plugins', 'uninstall', 'agent-runtime-perl'])
    expect(un.code, un.stderr).toBe(0)
    const after = JSON.parse((await t.a(['runtimes', '--json'])).stdout)
    expect(after.runtimes.map((r: {language: string}) => r.language)).not.toContain('perl')
    const gone = await t.a(['vm', 'create', '--language', 'perl'])
    expect(gone.code).toBe(2)
    expect(gone.stderr).toMatch(/unknown language "perl"\. Available: golang\|go, node\|javascript/)
    expect(gone.stderr).toMatch(/agent plugins install/)
  })

  it('reports two plugins claiming python as a conflict naming both, unless one is preferred', async () => {
    const t = isolated()
    cleanups.push(t.cleanup)
    const claim = (preferred: boolean) => `export default async () => ({language: 'python', image: 'localhost/agent/python:latest', recipe,
      hello: ['python3', '-c', 'print(1)'], version: ['python3', '-V'], fileRun: {'.py': ['python3', '{file}']}, preferred: ${preferred}})`
    const a = writePlugin(join(t.xdg, 'src', 'py-a'), 'agent-runtime-py-a', claim(false))
    const b = writePlugin(join(t.xdg, 'src', 'py-b'), 'agent-runtime-py-b', claim(false))
    for (const d of [a, b]) expect((await t.a(['plugins', 'link', '--no-install', d])).code).toBe(0)
    const r = await t.a(['runtimes'])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/CONFLICT: "python" is claimed by agent-runtime-py-(a|b)@1\.2\.3 and agent-runtime-py-(a|b)@1\.2\.3/)
    expect(r.stdout).toMatch(/^ruby\s/m)
    const c = await t.a(['vm', 'create', '--language', 'python'])
    expect(c.code).toBe(4)
    expect(c.stderr).toContain('agent-runtime-py-a@1.2.3')
    expect(c.stderr).toContain('agent-runtime-py-b@1.2.3')

    writePlugin(b, 'agent-runtime-py-b', claim(true))
    const fixed = JSON.parse((await t.a(['runtimes', '--json'])).stdout)
    expect(fixed.conflicts).toEqual([])
    expect(fixed.runtimes.find((x: {language: string}) => x.language === 'python').plugin).toBe('agent-runtime-py-b@1.2.3')
  })

  it('lets an installed plugin override the built-in one for the same language', async () => {
    const t = isolated()
    cleanups.push(t.cleanup)
    const d = writePlugin(join(t.xdg, 'src', 'my-ruby'), 'my-ruby', `export default async () => ({language: 'ruby', image: 'localhost/agent/ruby:latest', recipe,
      hello: ['ruby', '-e', 'puts 2'], version: ['ruby', '-v'], fileRun: {'.rb': ['ruby', '{file}']}})`)
    expect((await t.a(['plugins', 'link', '--no-install', d])).code).toBe(0)
    const doc = JSON.parse((await t.a(['runtimes', '--json'])).stdout)
    expect(doc.conflicts).toEqual([])
    expect(doc.runtimes.find((x: {language: string}) => x.language === 'ruby').plugin).toBe('my-ruby@1.2.3')
  })

  it('reports a plugin whose hook throws as broken while the other languages keep working', async () => {
    const t = isolated()
    cleanups.push(t.cleanup)
    const d = writePlugin(join(t.xdg, 'src', 'broken'), 'agent-runtime-broken', `export default async () => { throw new Error('cannot find my toolchain') }`)
    const bad = writePlugin(join(t.xdg, 'src', 'invalid'), 'agent-runtime-invalid', `export default async () => ({language: 'Not Valid', image: 'a b', recipe, hello: [], version: ['x'], fileRun: {}})`)
    for (const p of [d, bad]) expect((await t.a(['plugins', 'link', '--no-install', p])).code).toBe(0)
    const r = await t.a(['runtimes'])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/BROKEN: agent-runtime-broken@1\.2\.3: cannot find my toolchain/)
    expect(r.stdout).toMatch(/BROKEN: agent-runtime-invalid@1\.2\.3: invalid runtime declaration/)
    expect(r.stdout).toMatch(/^python\s/m)
    const c = await t.a(['vm', 'create', '--language', 'cobol'])
    expect(c.code).toBe(2)
    expect(c.stderr).toMatch(/broken plugins: agent-runtime-broken@1\.2\.3/)
  })

  it('a plugin may declare versions; an unknown one is a usage error listing them', async () => {
    const t = isolated()
    cleanups.push(t.cleanup)
    const d = writePlugin(
      join(t.xdg, 'src', 'perls'),
      'agent-runtime-perls',
      `export default async () => ({language: 'perl', versions: [
        {id: '5.40', image: 'docker.io/library/perl:5.40-slim'},
        {id: '5.36', image: 'docker.io/library/perl:5.36-slim', recipe},
      ], hello: ['perl', '-v'], version: ['perl', '-v'], fileRun: {'.pl': ['perl', '{file}']}})`,
      'FROM localhost/agent/debian:bookworm\nRUN true\n',
    )
    expect((await t.a(['plugins', 'link', '--no-install', d])).code).toBe(0)
    const doc = JSON.parse((await t.a(['runtimes', '--json'])).stdout)
    expect(doc.runtimes.find((x: {language: string}) => x.language === 'perl')).toMatchObject({
      defaultVersion: '5.40',
      image: 'docker.io/library/perl:5.40-slim',
      versions: [
        {id: '5.40', default: true, recipe: null, offline: false},
        {id: '5.36', default: false, offline: true},
      ],
    })
    const c = await t.a(['vm', 'create', '--language', 'perl@5.8'])
    expect(c.code).toBe(2)
    expect(c.stderr).toContain('unknown perl version "5.8". Known versions: 5.40 (default, image only), 5.36')
  })

  it('a recipe FROM a Debian base agent does not build gets a message naming the line to change', async () => {
    const t = isolated()
    cleanups.push(t.cleanup)
    const d = writePlugin(join(t.xdg, 'src', 'old'), 'agent-runtime-old', perlHook, 'FROM localhost/agent/debian:bullseye\nRUN true\n')
    expect((await t.a(['plugins', 'link', '--no-install', d])).code).toBe(0)
    const r = await t.a(['image', 'build', 'perl'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/starts FROM localhost\/agent\/debian:bullseye, a suite agent does not build: change that line to FROM localhost\/agent\/debian:trixie \(supported suites: trixie, bookworm\)/)
  })

  it('scaffolds a plugin that links and lists straight away', async () => {
    const t = isolated()
    cleanups.push(t.cleanup)
    const dir = join(t.xdg, 'src', 'agent-runtime-tcl')
    const init = await t.a(['runtimes', 'init', 'tcl', '--command', 'tclsh', '--extension', '.tcl', '--image', 'docker.io/library/tcl:8', '--apt-package', 'tcl', '--dir', dir])
    expect(init.code, init.stderr).toBe(0)
    const own = await execa('node', ['--test', 'test/'], {cwd: dir, reject: false})
    expect(own.exitCode, own.stdout).toBe(0)
    expect((await t.a(['plugins', 'link', '--no-install', dir])).code).toBe(0)
    const doc = JSON.parse((await t.a(['runtimes', '--json'])).stdout)
    expect(doc.runtimes.find((x: {language: string}) => x.language === 'tcl')).toMatchObject({plugin: 'agent-runtime-tcl@0.1.0', fileRun: {'.tcl': ['tclsh', '{file}']}})
    const again = await t.a(['runtimes', 'init', 'tcl', '--command', 'tclsh', '--extension', '.tcl', '--image', 'docker.io/library/tcl:8', '--dir', dir])
    expect(again.code).toBe(4)
  })
})
