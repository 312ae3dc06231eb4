import {accessSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {delimiter, dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ensureStateDir, type StatePaths} from '../../config/state-dir.js'
import type {HostProbe} from '../launcher.js'
import {KrunvmLauncher} from './launcher.js'

const HERE = dirname(fileURLToPath(import.meta.url))
const STANDIN_DIR = resolve(HERE, '../../../../../test/fixtures/krunvm-standin')
const STANDIN = join(STANDIN_DIR, 'krunvm')
/** krunvm counts as usable only with buildah on PATH: a placeholder, so no real buildah is needed (or run). */
const BUILDAH_PLACEHOLDER_DIR = resolve(HERE, '../../../../../test/fixtures/buildah-placeholder')

let root: string
let paths: StatePaths
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'agent-krunvm-host-test-'))
  paths = ensureStateDir(join(root, 'state'))
})
afterAll(() => {
  rmSync(root, {recursive: true, force: true})
})

/** The stand-in on PATH, buildah present, the test-only hypervisor switch on, allowed to run as non-root. */
function standinEnv(over: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    AGENT_KRUNVM: undefined,
    PATH: [STANDIN_DIR, BUILDAH_PLACEHOLDER_DIR, process.env.PATH ?? ''].join(delimiter),
    AGENT_KRUNVM_ASSUME_HYPERVISOR: '1',
    KRUNVM_STANDIN_LOG: join(root, 'standin.log'),
    ...over,
  }
  if (process.getuid?.() !== 0) env.BUILDAH_ISOLATION ??= 'chroot'
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k]
  return env
}

function canOpen(path: string): boolean {
  try {
    accessSync(path, constants.R_OK | constants.W_OK)
    return true
  } catch {
    return false
  }
}

function probe(env: NodeJS.ProcessEnv, kvm = join(root, 'no-kvm')): HostProbe {
  return {paths, env, platform: 'linux', roots: {cgroupRoot: join(root, 'cgroup'), procCgroups: join(root, 'cgroups'), kvm}}
}

describe('krunvm on this host', () => {
  it('reports availability: binary, hypervisor, and the test-only hypervisor switch', async () => {
    const ok = await new KrunvmLauncher({env: standinEnv()}).available()
    expect(ok).toEqual({ok: true, version: 'krunvm 0.2.6'})

    const hv = await new KrunvmLauncher({env: standinEnv({AGENT_KRUNVM_ASSUME_HYPERVISOR: undefined}), platform: 'linux'}).available()
    // Both answers are asserted: this depends on the host (the launcher reads the real /dev/kvm).
    if (!existsSync('/dev/kvm')) {
      expect(hv.ok).toBe(false)
      expect(hv.reason).toMatch(/\/dev\/kvm does not exist/)
      expect(hv.fix).toMatch(/enable KVM.*gvisor/)
    } else if (canOpen('/dev/kvm')) {
      expect(hv, hv.reason).toMatchObject({ok: true, version: 'krunvm 0.2.6'})
    } else {
      expect(hv.reason).toMatch(/\/dev\/kvm is not readable and writable/)
    }

    const none = await new KrunvmLauncher({env: standinEnv({PATH: '/nonexistent'})}).available()
    expect(none.ok).toBe(false)
    expect(none.reason).toMatch(/krunvm is not installed/)
    expect(none.fix).toMatch(/--launcher gvisor/)

    // A PATH with the stand-in and node (it is a node script) but no buildah.
    const nodeOnly = join(root, 'node-only')
    mkdirSync(nodeOnly, {recursive: true})
    if (!existsSync(join(nodeOnly, 'node'))) symlinkSync(process.execPath, join(nodeOnly, 'node'))
    const noBuildah = await new KrunvmLauncher({env: standinEnv({PATH: [STANDIN_DIR, nodeOnly].join(delimiter)})}).available()
    expect(noBuildah).toMatchObject({ok: false, version: 'krunvm 0.2.6', reason: expect.stringMatching(/needs buildah/)})

    const path = [BUILDAH_PLACEHOLDER_DIR, process.env.PATH ?? ''].join(delimiter)
    expect((await new KrunvmLauncher({env: standinEnv({PATH: path, AGENT_KRUNVM: STANDIN})}).available()).ok).toBe(true)
    const bad = await new KrunvmLauncher({env: standinEnv({PATH: path, AGENT_KRUNVM: '/nonexistent/krunvm'})}).available()
    expect(bad.reason).toMatch(/AGENT_KRUNVM=.* is not an executable/)
  })

  it('gives doctor the binary (version asked with agent\'s own XDG_CONFIG_HOME) and the hypervisor', async () => {
    const log = join(root, 'checks.log')
    rmSync(log, {force: true})
    rmSync(paths.krunvmConfigHome, {recursive: true, force: true})
    const l = new KrunvmLauncher()
    const [bin, hv, version, ...rest] = await l.checks(probe(standinEnv({KRUNVM_STANDIN_LOG: log})))
    expect(rest).toEqual([])
    expect(version).toEqual({
      id: 'krunvm-version',
      title: 'krunvm version',
      ok: true,
      neededBy: ['krunvm'],
      detail: 'krunvm 0.2.6: network always on (no off switch: VMs need --network allow_all); one command per boot, no terminal',
    })
    expect(bin).toMatchObject({id: 'krunvm', ok: true, neededBy: ['krunvm']})
    expect(bin.detail).toMatch(/^krunvm 0\.2\.6 \(.*krunvm-standin\/krunvm\)$/)
    // The stand-in refuses to run without XDG_CONFIG_HOME; krunvm would create its TOML there.
    const call = JSON.parse(readFileSync(log, 'utf8').trim().split('\n')[0]) as {argv: string[]; env: Record<string, string>}
    expect(call).toMatchObject({argv: ['--version'], env: {XDG_CONFIG_HOME: paths.krunvmConfigHome}})
    expect(existsSync(paths.krunvmConfigHome)).toBe(true)
    expect(hv).toMatchObject({id: 'hypervisor', ok: true, neededBy: ['krunvm'], detail: expect.stringMatching(/AGENT_KRUNVM_ASSUME_HYPERVISOR=1, test only/)})

    const noKvm = join(root, 'no-kvm')
    const [, real] = await l.checks(probe(standinEnv({AGENT_KRUNVM_ASSUME_HYPERVISOR: undefined}), noKvm))
    expect(real).toMatchObject({id: 'hypervisor', ok: false, neededBy: ['krunvm'], detail: `${noKvm} does not exist (no KVM)`, fix: expect.stringMatching(/enable KVM/)})

    const [missing, ...others] = await l.checks(probe(standinEnv({PATH: '/nonexistent'})))
    expect(others.map((c) => c.id)).toEqual(['hypervisor'])
    expect(missing).toMatchObject({id: 'krunvm', ok: false, detail: 'not found on PATH', fix: expect.stringMatching(/install krunvm.*--launcher gvisor/)})
  })

  it('declares what it can do: network always on, files only with guest volumes, no orphan sweep, no terminal', () => {
    const l = new KrunvmLauncher({env: standinEnv({AGENT_ENABLE_GUEST_VOLUMES: '1'})})
    expect(l.summary).toBe('real microVMs with their own kernel (libkrun)')
    expect(l.capabilities).toEqual({
      networkNone: {
        why: "krunvm cannot run a VM without network: libkrun gives the guest the host's sockets (TSI) and krunvm has no switch to turn that off",
        hint: 'use `--network allow_all` with krunvm, or `--launcher gvisor` for a VM with no network',
      },
      egressFilter: {
        why: "krunvm cannot filter a VM's egress: libkrun's TSI opens the guest's sockets on the host itself, so private and host addresses stay reachable and allow lists cannot be enforced",
        hint: 'use `--launcher gvisor` (or runc) for --network allow:LIST, --allow-host, or an allow_all limited to the public internet',
      },
      files: true,
      sweepsOrphans: false,
      tty: false,
    })
  })

  it('reads AGENT_ENABLE_GUEST_VOLUMES: 1/0/true/false, default off only on macOS', () => {
    const files = (platform: NodeJS.Platform, v?: string) =>
      new KrunvmLauncher({platform, env: standinEnv({AGENT_ENABLE_GUEST_VOLUMES: v})}).capabilities.files
    expect(files('linux')).toBe(true)
    expect(files('darwin')).toEqual({why: 'krunvm guest volumes are off by default on macOS', hint: expect.stringMatching(/AGENT_ENABLE_GUEST_VOLUMES=1/)})
    expect(files('darwin', 'true')).toBe(true)
    expect(files('linux', 'false')).toEqual({why: 'krunvm guest volumes are off (AGENT_ENABLE_GUEST_VOLUMES=false)', hint: expect.stringMatching(/AGENT_ENABLE_GUEST_VOLUMES=1/)})
    expect(files('linux', 'maybe')).toMatchObject({why: expect.stringMatching(/must be 1, 0, true or false/)})
    expect(() => new KrunvmLauncher({env: standinEnv({AGENT_ENABLE_GUEST_VOLUMES: 'maybe'})}).volumesEnabled()).toThrow(/must be 1, 0, true or false/)
  })

  it('krunvm 0.2.7 (stand-in): doctor prints that version and what it allows, as on a Mac', async () => {
    const env = standinEnv({KRUNVM_STANDIN_VERSION: '0.2.7'})
    expect(await new KrunvmLauncher({env}).available()).toEqual({ok: true, version: 'krunvm 0.2.7'})
    const checks = await new KrunvmLauncher().checks({...probe(env), platform: 'darwin'})
    expect(checks.find((c) => c.id === 'krunvm')!.detail).toMatch(/^krunvm 0\.2\.7 \(/)
    expect(checks.find((c) => c.id === 'krunvm-version')!.detail).toBe(
      'krunvm 0.2.7: network always on (no off switch: VMs need --network allow_all); one command per boot, no terminal; guest volumes through virtio-fs (AGENT_ENABLE_GUEST_VOLUMES=1)',
    )
  })

  it('macOS: asks sysctl for Apple silicon and Hypervisor.framework (a virtual Mac has kern.hv_support 0)', async () => {
    // The macOS stand-ins of test/fixtures/macos-stubs answer sysctl as a Mac would.
    const stubs = resolve(HERE, '../../../../../test/fixtures/macos-stubs')
    const mac = (over: NodeJS.ProcessEnv) =>
      standinEnv({AGENT_KRUNVM_ASSUME_HYPERVISOR: undefined, PATH: [stubs, STANDIN_DIR, BUILDAH_PLACEHOLDER_DIR, process.env.PATH ?? ''].join(delimiter), MACOS_STUB_STATE: join(root, 'mac'), AGENT_SETUP_VOLUMES_DIR: join(root, 'mac'), ...over})
    const hvCheck = async (env: NodeJS.ProcessEnv) => (await new KrunvmLauncher().checks({...probe(env), platform: 'darwin'})).find((c) => c.id === 'hypervisor')
    expect(await new KrunvmLauncher({env: mac({}), platform: 'darwin'}).available()).toEqual({ok: true, version: 'krunvm 0.2.6'})
    expect(await hvCheck(mac({}))).toMatchObject({ok: true, detail: 'macOS Hypervisor.framework (Apple silicon, kern.hv_support 1)'})

    const virtual = await new KrunvmLauncher({env: mac({MACOS_STUB_HV: '0'}), platform: 'darwin'}).available()
    expect(virtual).toMatchObject({ok: false, version: 'krunvm 0.2.6', reason: expect.stringMatching(/Hypervisor\.framework is not available \(sysctl kern\.hv_support is 0\)/)})
    expect(await hvCheck(mac({MACOS_STUB_HV: '0'}))).toMatchObject({ok: false, fix: expect.stringMatching(/on the Mac itself/)})

    const intel = await new KrunvmLauncher({env: mac({MACOS_STUB_TRANSLATED: 'absent'}), platform: 'darwin'}).available()
    expect(intel).toMatchObject({ok: false, reason: expect.stringMatching(/needs Apple silicon \(sysctl hw\.optional\.arm64 is not 1\)/)})
    const log = readFileSync(join(root, 'mac', 'log'), 'utf8')
    expect(log).toContain('sysctl -n kern.hv_support')
  })
})
