// scripts/macos/setup.sh end to end, as on an Apple-silicon Mac: uname, sw_vers, sysctl, brew,
// diskutil and mount are the stand-ins in test/fixtures/macos-stubs (first on PATH), awk is the BWK
// awk macOS has (Debian's original-awk); HOME, /Volumes
// and the stand-ins' state are temp dirs, so nothing on this machine is touched. Then agent's own
// image-store code (in-process as darwin, and a real `agent` process here) must leave the files the
// script wrote exactly as they are.
import {execa} from 'execa'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'
import {imageStore} from '../../packages/cli/src/images/storage.js'
import {ROOT, agent} from '../helpers/agent.js'

const SCRIPT = join(ROOT, 'scripts/macos/setup.sh')
const STUBS = join(ROOT, 'test/fixtures/macos-stubs')
const BWK_AWK = '/usr/bin/original-awk'

interface Mac {
  root: string
  home: string
  volumes: string
  stub: string
  mount: string
  state: string
  store: string
  toml: string
  log: () => string[]
  run: (args?: string[], env?: Record<string, string>) => Promise<{code: number; out: string; stdout: string}>
}

const macs: string[] = []
afterEach(() => macs.splice(0).forEach((d) => rmSync(d, {recursive: true, force: true})))

function mac(): Mac {
  const root = mkdtempSync(join(tmpdir(), 'agent-macos-setup-'))
  macs.push(root)
  const home = join(root, 'home')
  const volumes = join(root, 'Volumes')
  const stub = join(root, 'stub')
  for (const d of [home, volumes, stub]) mkdirSync(d)
  // macOS ships the BWK awk ("one true awk"), not mawk or gawk: the script must run with it.
  if (!existsSync(BWK_AWK)) throw new Error(`${BWK_AWK} is missing: install the Debian package original-awk (scripts/setup.sh does)`)
  mkdirSync(join(root, 'bin'))
  symlinkSync(BWK_AWK, join(root, 'bin', 'awk'))
  const mount = join(volumes, 'krunvm')
  const state = join(mount, 'agent')
  return {
    root,
    home,
    volumes,
    stub,
    mount,
    state,
    store: join(state, 'containers'),
    toml: join(home, 'Library/Preferences/rs.krunvm/krunvm.toml'),
    log: () => (existsSync(join(stub, 'log')) ? readFileSync(join(stub, 'log'), 'utf8').trimEnd().split('\n') : []),
    run: async (args = [], env = {}) => {
      const r = await execa('bash', [SCRIPT, ...args], {
        env: {
          PATH: `${STUBS}:${join(root, 'bin')}:${join(stub, 'brew/bin')}:/usr/local/bin:/usr/bin:/bin`,
          HOME: home,
          MACOS_STUB_STATE: stub,
          AGENT_SETUP_VOLUMES_DIR: volumes,
          ...env,
        },
        extendEnv: false,
        reject: false,
        all: true,
        stdin: 'ignore',
        timeout: 60_000,
      })
      return {code: r.exitCode ?? -1, out: String(r.all), stdout: String(r.stdout)}
    },
  }
}

/** Content and mtime of every regular file in `dir`: what "left untouched" means here. */
function files(dir: string): Record<string, string> {
  return Object.fromEntries(
    readdirSync(dir)
      .filter((f) => statSync(join(dir, f)).isFile())
      .sort()
      .map((f) => [f, `${statSync(join(dir, f)).mtimeMs} ${readFileSync(join(dir, f), 'utf8')}`]),
  )
}

/** An APFS volume the stand-in diskutil knows (`mounted` false: it exists but is not mounted). */
function volume(m: Mac, dev: string, name: string, personality = 'Case-sensitive APFS', mounted = false) {
  mkdirSync(join(m.stub, 'volumes'), {recursive: true})
  writeFileSync(join(m.stub, 'volumes', dev), `name=${name}\npersonality=${personality}\nmounted=${mounted ? 1 : 0}\n`)
  if (mounted) mkdirSync(join(m.volumes, name), {recursive: true})
}

describe('scripts/macos/setup.sh on a Mac (stand-ins)', () => {
  it('sets up a new Mac: tap-qualified formulae, a case-sensitive volume, krunvm TOML and the vfs image store', async () => {
    const m = mac()
    const r = await m.run()
    expect(r.code, r.out).toBe(0)
    const log = m.log()
    expect(log).toContain('brew tap slp/krun')
    expect(log).toContain('brew install slp/krun/buildah slp/krun/krunvm')
    expect(log.filter((l) => l.startsWith('brew install'))).toHaveLength(1)
    expect(log).toContain('diskutil apfs addVolume disk3 Case-sensitive APFS krunvm')
    // The password note comes before the diskutil step, and nothing says DYLD_*.
    expect(r.out.indexOf('may ask for your password')).toBeGreaterThan(-1)
    expect(r.out.indexOf('may ask for your password')).toBeLessThan(r.out.indexOf('running: diskutil apfs addVolume'))
    expect(r.out).not.toMatch(/DYLD_/)
    expect(r.out).not.toMatch(/unreliable/)

    expect(readFileSync(join(m.store, 'storage.conf'), 'utf8')).toMatch(
      new RegExp(`\\[storage\\]\\ndriver = "vfs"\\ngraphroot = "${m.mount}/root"\\nrunroot = "${m.mount}/runroot"\\n$`),
    )
    expect(JSON.parse(readFileSync(join(m.store, 'policy.json'), 'utf8'))).toEqual({default: [{type: 'insecureAcceptAnything'}]})
    expect(readFileSync(join(m.store, 'registries.conf'), 'utf8')).toContain('short-name-mode = "permissive"')
    expect(readFileSync(m.toml, 'utf8')).toContain(`storage_volume = '${m.mount}'\n`)
    expect(existsSync(join(m.mount, 'root'))).toBe(true)
    expect(r.stdout).toContain(`export AGENT_STATE_DIR=${m.state}\n`)
    expect(r.stdout).toContain(`export CONTAINERS_STORAGE_CONF=${join(m.store, 'storage.conf')}\n`)
    // Every change is listed at the end.
    expect(r.out).toMatch(/changed:\n {2}- brew tap slp\/krun\n/)

    // agent's image-store code, as on macOS: accepts the files and changes none of them.
    const before = files(m.store)
    const s = imageStore(m.state, {AGENT_STATE_DIR: m.state}, 'darwin')
    expect(s.problem).toBeUndefined()
    expect(s.env.CONTAINERS_STORAGE_CONF).toBe(join(m.store, 'storage.conf'))
    expect(files(m.store)).toEqual(before)

    // A real agent process (Linux here) with that state dir runs buildah on the vfs store and
    // leaves the three files as they are.
    const list = await agent(['image', 'list', '--json'], {env: {AGENT_STATE_DIR: m.state, AGENT_IMAGE_STORE: undefined}})
    expect(list.code, list.stderr).toBe(0)
    expect(JSON.parse(list.stdout)).toEqual([])
    expect(files(m.store)).toEqual(before)
    expect(existsSync(join(m.mount, 'root', 'vfs'))).toBe(true)

    // Run again: nothing changes, no second volume.
    const again = await m.run()
    expect(again.code, again.out).toBe(0)
    expect(again.out).toMatch(/nothing to change/)
    expect(files(m.store)).toEqual(before)
    expect(m.log().filter((l) => l.startsWith('diskutil apfs addVolume'))).toHaveLength(1)
    expect(m.log().filter((l) => l.startsWith('brew install'))).toHaveLength(1)
  })

  it('does not repoint a different storage_volume krunvm already has (single-quoted, as krunvm writes it) unless --force', async () => {
    const m = mac()
    volume(m, 'disk3s7', 'krunvm', 'Case-sensitive APFS', true)
    const old = join(m.volumes, 'old-krunvm')
    mkdirSync(join(m.home, 'Library/Preferences/rs.krunvm'), {recursive: true})
    const krunvmToml = `version = 1\ndefault_cpus = 2\ndefault_mem = 1024\ndefault_dns = '1.1.1.1'\nstorage_volume = '${old}'\n\n[vmconfig_map.fedora]\nname = 'fedora'\ncpus = 2\nmem = 1024\ncontainer = 'fedora-working-container'\nworkdir = ''\ndns = '1.1.1.1'\n\n[vmconfig_map.fedora.mapped_volumes]\n\n[vmconfig_map.fedora.mapped_ports]\n`
    writeFileSync(m.toml, krunvmToml)
    const r = await m.run()
    expect(r.code).not.toBe(0)
    expect(r.out).toContain(`krunvm already keeps its images and VMs on ${old}`)
    expect(r.out).toContain('Changing it would leave these VMs without their containers: fedora. Nothing was changed.')
    expect(r.out).toContain(`--mount ${old}`)
    expect(r.out).toContain('--force')
    expect(readFileSync(m.toml, 'utf8')).toBe(krunvmToml)
    // Refused before anything changed: no brew, no diskutil, no image store.
    expect(m.log().filter((l) => /^(brew (tap|install)|diskutil)/.test(l))).toEqual([])
    expect(existsSync(m.store)).toBe(false)

    const forced = await m.run(['--force'])
    expect(forced.code, forced.out).toBe(0)
    expect(forced.out).toMatch(/repointed from .*old-krunvm to .*Volumes\/krunvm/)
    const now = readFileSync(m.toml, 'utf8')
    expect(now).toBe(krunvmToml.replace(`storage_volume = '${old}'`, `storage_volume = '${m.mount}'`))
    const copies = readdirSync(join(m.home, 'Library/Preferences/rs.krunvm')).filter((f) => f.startsWith('krunvm.toml.bak-'))
    expect(copies).toHaveLength(1)
    expect(readFileSync(join(m.home, 'Library/Preferences/rs.krunvm', copies[0]), 'utf8')).toBe(krunvmToml)
  })

  it('keeps using the storage_volume krunvm has with --mount, and fills in an empty one', async () => {
    const m = mac()
    volume(m, 'disk3s7', 'old-krunvm', 'Case-sensitive APFS', true)
    mkdirSync(join(m.home, 'Library/Preferences/rs.krunvm'), {recursive: true})
    const old = join(m.volumes, 'old-krunvm')
    writeFileSync(m.toml, `version = 1\nstorage_volume = "${old}/"\n\n[vmconfig_map]\n`)
    const r = await m.run(['--mount', old])
    expect(r.code, r.out).toBe(0)
    expect(r.out).toContain(`unchanged: ${m.toml}`)
    expect(readFileSync(join(old, 'agent/containers/storage.conf'), 'utf8')).toContain(`graphroot = "${old}/root"`)

    const e = mac()
    mkdirSync(join(e.home, 'Library/Preferences/rs.krunvm'), {recursive: true})
    // What krunvm leaves when it was run before its volume was configured.
    writeFileSync(e.toml, `version = 1\ndefault_cpus = 2\nstorage_volume = ''\n\n[vmconfig_map]\n`)
    const r2 = await e.run()
    expect(r2.code, r2.out).toBe(0)
    expect(readFileSync(e.toml, 'utf8')).toBe(`version = 1\ndefault_cpus = 2\nstorage_volume = '${e.mount}'\n\n[vmconfig_map]\n`)
  })

  it('finds an existing volume by its device identifier and mounts it instead of making a second one', async () => {
    const m = mac()
    volume(m, 'disk3s5', 'Data')
    volume(m, 'disk3s9', 'krunvm')
    const r = await m.run()
    expect(r.code, r.out).toBe(0)
    const log = m.log()
    expect(log).toContain('diskutil mount disk3s9')
    expect(log).toContain('diskutil info -plist disk3s9')
    // A volume name is not a documented diskutil specifier: never used as one.
    expect(log.filter((l) => /^diskutil (info|mount)( -plist)? krunvm/.test(l))).toEqual([])
    expect(log.filter((l) => l.startsWith('diskutil apfs addVolume'))).toEqual([])
    expect(r.out).toContain('mounted disk3s9 at')
  })

  it('refuses a same-named volume that is not case-sensitive, and two volumes of that name', async () => {
    const m = mac()
    volume(m, 'disk3s9', 'krunvm', 'APFS')
    const r = await m.run()
    expect(r.code).not.toBe(0)
    expect(r.out).toMatch(/"krunvm" \(disk3s9\) is "APFS", not case-sensitive/)
    expect(m.log().filter((l) => /^diskutil (mount|apfs addVolume)/.test(l))).toEqual([])

    const t = mac()
    volume(t, 'disk3s8', 'krunvm')
    volume(t, 'disk3s9', 'krunvm')
    const r2 = await t.run()
    expect(r2.code).not.toBe(0)
    expect(r2.out).toMatch(/several APFS volumes called "krunvm" \(disk3s8 disk3s9\)/)
  })

  it('does not create volumes at a custom --mount (it would not come back after a restart), nor over a plain dir', async () => {
    const m = mac()
    const r = await m.run(['--mount', join(m.root, 'elsewhere')])
    expect(r.code).not.toBe(0)
    expect(r.out).toMatch(/nothing is mounted at .*elsewhere/)
    expect(m.log().filter((l) => l.startsWith('diskutil apfs addVolume'))).toEqual([])
    // A plain dir where the volume belongs: macOS would mount a new volume at "krunvm 1".
    mkdirSync(m.mount)
    const r2 = await m.run()
    expect(r2.code).not.toBe(0)
    expect(r2.out).toMatch(/Volumes\/krunvm exists but no volume is mounted there/)
    expect(m.log().filter((l) => l.startsWith('diskutil apfs addVolume'))).toEqual([])
  })

  it('stops under Rosetta, on an Intel Mac and without Hypervisor.framework, before changing anything', async () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{MACOS_STUB_ARCH: 'x86_64', MACOS_STUB_TRANSLATED: '1'}, /runs under Rosetta .*arch -arm64/],
      [{MACOS_STUB_ARCH: 'x86_64', MACOS_STUB_TRANSLATED: 'absent'}, /needs Apple silicon .*this Mac is x86_64/],
      [{MACOS_STUB_HV: '0'}, /Hypervisor\.framework is not available here \(sysctl kern\.hv_support is not 1\)/],
    ]
    for (const [env, why] of cases) {
      const m = mac()
      const r = await m.run([], env)
      expect(r.code, JSON.stringify(env)).toBe(1)
      expect(r.out).toMatch(why)
      expect(m.log().filter((l) => /^(brew|diskutil)/.test(l))).toEqual([])
      expect(existsSync(m.toml)).toBe(false)
    }
  })

  it('warns and stops before Homebrew would build from source, unless --allow-source-build', async () => {
    const m = mac()
    const r = await m.run([], {MACOS_STUB_UNBOTTLED: 'krunvm libkrun'})
    expect(r.code).not.toBe(0)
    expect(r.out).toMatch(/no ready-made bottle of libkrun krunvm for macOS 15\.5, so it would build from source: that needs the Xcode command line tools, Rust and Go/)
    expect(m.log().filter((l) => l.startsWith('brew install'))).toEqual([])
    const ok = await m.run(['--allow-source-build'], {MACOS_STUB_UNBOTTLED: 'krunvm libkrun'})
    expect(ok.code, ok.out).toBe(0)
    expect(ok.out).toContain('warning: building libkrun krunvm from source')
    expect(m.log()).toContain('brew install slp/krun/buildah slp/krun/krunvm')
  })

  it('replaces an overlay storage.conf an older agent wrote, keeping a copy and saying so', async () => {
    const m = mac()
    volume(m, 'disk3s9', 'krunvm', 'Case-sensitive APFS', true)
    mkdirSync(m.store, {recursive: true})
    const old = `# Written by agent\n[storage]\ndriver = "overlay"\ngraphroot = "${m.store}/storage"\nrunroot = "${m.store}/runroot"\n`
    writeFileSync(join(m.store, 'storage.conf'), old)
    writeFileSync(join(m.store, 'policy.json'), JSON.stringify({default: [{type: 'insecureAcceptAnything'}]}, null, 2) + '\n')
    writeFileSync(join(m.store, 'registries.conf'), '# Written by agent\nunqualified-search-registries = ["docker.io"]\nshort-name-mode = "permissive"\n')
    expect(imageStore(m.state, {AGENT_STATE_DIR: m.state}, 'darwin').problem?.reason).toMatch(/overlay/)
    const r = await m.run()
    expect(r.code, r.out).toBe(0)
    expect(r.out).toMatch(/replaced .*storage\.conf \(old one kept as .*storage\.conf\.bak-/)
    const copy = readdirSync(m.store).find((f) => f.startsWith('storage.conf.bak-'))!
    expect(readFileSync(join(m.store, copy), 'utf8')).toBe(old)
    expect(readFileSync(join(m.store, 'storage.conf'), 'utf8')).toContain('driver = "vfs"')
    expect(imageStore(m.state, {AGENT_STATE_DIR: m.state}, 'darwin').problem).toBeUndefined()
  })

  it('--no-install names what is missing and installs nothing', async () => {
    const m = mac()
    const r = await m.run(['--no-install'])
    expect(r.code).not.toBe(0)
    expect(r.out).toMatch(/not installed: libkrunfw libkrun buildah krunvm \(and --no-install was given\): brew install slp\/krun\/buildah slp\/krun\/krunvm/)
    expect(m.log().filter((l) => /^brew (tap|install) /.test(l))).toEqual([])
  })

  it('the stand-ins pass shellcheck (the script itself is in npm run lint:sh and scripts.test.ts)', async () => {
    const stubs = readdirSync(STUBS).filter((f) => !f.endsWith('.md')).map((f) => join(STUBS, f))
    expect(stubs.length).toBe(7)
    const r = await execa('shellcheck', ['-x', ...stubs], {reject: false, all: true, cwd: STUBS})
    expect(String(r.all)).toBe('')
    expect(r.exitCode).toBe(0)
  })
})
