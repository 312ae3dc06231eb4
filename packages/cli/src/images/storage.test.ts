import {existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {delimiter, dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterEach, describe, expect, it} from 'vitest'
import {imageChecks} from './checks.js'
import {imageStore, readStorageSettings} from './storage.js'

describe('imageStore', () => {
  const dirs: string[] = []
  const tmp = (name = 'agentimg-storage-') => {
    const d = mkdtempSync(join(tmpdir(), name))
    dirs.push(d)
    return d
  }
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, {recursive: true, force: true})))

  it("uses the host's normal storage when neither AGENT_STATE_DIR nor AGENT_IMAGE_STORE is set", () => {
    expect(imageStore('/nonexistent', {})).toEqual({env: {}})
  })

  it('isolates storage under <state>/containers with AGENT_STATE_DIR', () => {
    const state = tmp()
    const s = imageStore(state, {AGENT_STATE_DIR: state}, 'linux')
    const dir = join(state, 'containers')
    expect(s.problem).toBeUndefined()
    expect(s.dir).toBe(dir)
    expect(s.env.CONTAINERS_STORAGE_CONF).toBe(join(dir, 'storage.conf'))
    expect(s.policy).toBe(join(dir, 'policy.json'))
    expect(s.hostDir).toBe(join(dir, 'host-var-lib-containers'))
    const conf = readFileSync(s.env.CONTAINERS_STORAGE_CONF, 'utf8')
    expect(conf).toContain(`graphroot = "${join(dir, 'storage')}"`)
    expect(conf).toContain(`runroot = "${join(dir, 'runroot')}"`)
    expect(conf).not.toContain('/var/lib/containers')
    expect(JSON.parse(readFileSync(s.policy!, 'utf8'))).toEqual({default: [{type: 'insecureAcceptAnything'}]})
    expect(existsSync(s.hostDir!)).toBe(true)
  })

  it('AGENT_IMAGE_STORE wins, so several state dirs share one store', () => {
    const state = tmp()
    const shared = tmp()
    const a = imageStore(state, {AGENT_STATE_DIR: state, AGENT_IMAGE_STORE: shared})
    const b = imageStore(tmp(), {AGENT_STATE_DIR: 'x', AGENT_IMAGE_STORE: shared})
    expect(a.dir).toBe(shared)
    expect(b.env).toEqual(a.env)
    expect(existsSync(join(state, 'containers'))).toBe(false)
  })

  it('quotes paths in storage.conf', () => {
    const state = tmp('agentimg-"q\\-')
    const s = imageStore(state, {AGENT_STATE_DIR: state})
    const conf = readFileSync(s.env.CONTAINERS_STORAGE_CONF, 'utf8')
    expect(conf).toContain(`graphroot = ${JSON.stringify(join(state, 'containers', 'storage'))}`)
  })

  // What scripts/macos/setup.sh writes (test/e2e/macos-setup.test.ts runs the script itself).
  const SETUP_CONF = `# Written by scripts/macos/setup.sh\n[storage]\ndriver = "vfs"\ngraphroot = "/Volumes/krunvm/root"\nrunroot = "/Volumes/krunvm/runroot"\n`
  const writeStore = (dir: string, conf = SETUP_CONF) => {
    mkdirSync(dir, {recursive: true})
    writeFileSync(join(dir, 'storage.conf'), conf)
    writeFileSync(join(dir, 'policy.json'), '{"default": [{"type": "reject"}]}\n')
    writeFileSync(join(dir, 'registries.conf'), '# mine\n')
  }
  const snapshot = (dir: string) =>
    Object.fromEntries(readdirSync(dir).sort().map((f) => [f, statSync(join(dir, f)).isFile() ? `${readFileSync(join(dir, f), 'utf8')}@${statSync(join(dir, f)).mtimeMs}` : 'dir']))

  it('macOS: accepts the set-up script’s files and changes nothing in the store dir', () => {
    const state = tmp()
    const dir = join(state, 'containers')
    writeStore(dir)
    const before = snapshot(dir)
    const s = imageStore(state, {AGENT_STATE_DIR: state}, 'darwin')
    expect(s.problem).toBeUndefined()
    expect(s.env.CONTAINERS_STORAGE_CONF).toBe(join(dir, 'storage.conf'))
    // No host-var-lib-containers on macOS: that mount-namespace trick is Linux only.
    expect(s.hostDir).toBeUndefined()
    expect(snapshot(dir)).toEqual(before)
  })

  it('macOS: a missing configuration is reported, never written', () => {
    const state = tmp()
    const s = imageStore(state, {AGENT_STATE_DIR: state}, 'darwin')
    expect(s.problem?.reason).toMatch(/not set up \(missing .*storage\.conf/)
    expect(s.problem?.fix).toMatch(/scripts\/macos\/setup\.sh/)
    expect(existsSync(join(state, 'containers'))).toBe(false)
  })

  it('macOS: an overlay storage.conf (what older agents wrote) is reported and kept as it is', () => {
    const state = tmp()
    const dir = join(state, 'containers')
    writeStore(dir, `[storage]\ndriver = "overlay"\ngraphroot = "${dir}/storage"\nrunroot = "${dir}/runroot"\n`)
    const before = snapshot(dir)
    const s = imageStore(state, {AGENT_STATE_DIR: state}, 'darwin')
    expect(s.problem?.reason).toMatch(/driver = "overlay": on macOS .* only use the vfs driver/)
    expect(snapshot(dir)).toEqual(before)
  })

  it('Linux: a storage.conf someone else wrote is kept; only missing files are added', () => {
    const state = tmp()
    const dir = join(state, 'containers')
    mkdirSync(dir, {recursive: true})
    const mine = `[storage]\ndriver = 'vfs'\ngraphroot = '/srv/images/root'\nrunroot = '/srv/images/run'\n`
    writeFileSync(join(dir, 'storage.conf'), mine)
    const s = imageStore(state, {AGENT_STATE_DIR: state}, 'linux')
    expect(s.problem).toBeUndefined()
    expect(readFileSync(join(dir, 'storage.conf'), 'utf8')).toBe(mine)
    expect(JSON.parse(readFileSync(join(dir, 'policy.json'), 'utf8'))).toEqual({default: [{type: 'insecureAcceptAnything'}]})
    expect(existsSync(join(dir, 'registries.conf'))).toBe(true)
    expect(existsSync(s.hostDir!)).toBe(true)
    // A second call (another agent process) changes nothing.
    const before = snapshot(dir)
    imageStore(state, {AGENT_STATE_DIR: state}, 'linux')
    expect(snapshot(dir)).toEqual(before)
  })

  it('reports a storage.conf without an absolute graph root instead of guessing', () => {
    const state = tmp()
    const dir = join(state, 'containers')
    writeStore(dir, '[storage]\ndriver = "vfs"\nrunroot = "/r"\n[storage.options]\ngraphroot = "/not/this/table"\n')
    expect(imageStore(state, {AGENT_STATE_DIR: state}, 'darwin').problem?.reason).toMatch(/sets no graphroot/)
    writeStore(dir, '[storage]\ndriver = "vfs"\ngraphroot = "rel/root"\nrunroot = "/r"\n')
    expect(imageStore(state, {AGENT_STATE_DIR: state}, 'linux').problem?.reason).toMatch(/graphroot must be an absolute path, got "rel\/root"/)
  })

  it('reads basic and literal TOML strings, with comments and escapes', () => {
    expect(readStorageSettings(`[storage]\n  driver='vfs' # c\ngraphroot = "/a \\"b\\"\\\\c"\nrunroot="/r"\n[other]\ndriver = "x"\n`)).toEqual({
      driver: 'vfs',
      graphroot: '/a "b"\\c',
      runroot: '/r',
    })
  })

  it('doctor shows the problem as the image-storage line, without running buildah on that store', async () => {
    const state = tmp()
    writeStore(join(state, 'containers'), '[storage]\ndriver = "vfs"\ngraphroot = "/g"\n')
    // The placeholder answers --version only; anything else it was asked would fail the line differently.
    const placeholder = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../test/fixtures/buildah-placeholder')
    const [bin, storage] = await imageChecks(state, {AGENT_STATE_DIR: state, PATH: [placeholder, process.env.PATH].join(delimiter)}, ['gvisor'])
    expect(bin).toMatchObject({id: 'buildah', ok: true})
    expect(storage).toMatchObject({id: 'image-storage', ok: false, detail: expect.stringMatching(/sets no runroot in its \[storage\] table/), fix: expect.stringMatching(/move it aside/)})
  })
})
