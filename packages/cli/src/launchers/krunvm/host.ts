/**
 * What krunvm needs on this host: the binary, a hypervisor (KVM or Hypervisor.framework), and on
 * Linux root (or `buildah unshare`) and buildah. available() answers "can agent use krunvm now";
 * krunvmChecks() gives doctor the same facts as separate lines.
 */
import {mkdirSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {findBinary, tryRun} from '../../system/index.js'
import {checkBinary, checkHypervisor} from '../host-checks.js'
import type {Availability, HostCheck, HostProbe} from '../launcher.js'
import {krunvmFeatures} from './version.js'

export const INSTALL = 'install krunvm (macOS: scripts/macos/setup.sh, or `brew install slp/krun/krunvm`; Linux: build containers/krunvm with libkrun)'
export const INSTALL_FIX = `${INSTALL}, or use --launcher gvisor`
const KVM_STEP = 'enable KVM (load kvm_intel/kvm_amd, or enable nested virtualisation for this VM)'
const KVM = '/dev/kvm'
/** TEST-ONLY: skips the hypervisor check, so contract tests can drive the krunvm stand-in. */
const ASSUME_HYPERVISOR = 'AGENT_KRUNVM_ASSUME_HYPERVISOR'

/** The krunvm binary: AGENT_KRUNVM, else `krunvm` on PATH. */
export function krunvmBinary(env: NodeJS.ProcessEnv): string | undefined {
  return findBinary('krunvm', env, env.AGENT_KRUNVM)
}

function missingBinaryReason(env: NodeJS.ProcessEnv): string {
  return env.AGENT_KRUNVM ? `AGENT_KRUNVM=${env.AGENT_KRUNVM} is not an executable file` : 'krunvm is not installed (not found on PATH)'
}

type Hypervisor = {ok: true} | {ok: false; reason: string; fix: string; noKvm: boolean}

async function hypervisor(env: NodeJS.ProcessEnv, platform: NodeJS.Platform, kvm = KVM): Promise<Hypervisor> {
  if (env[ASSUME_HYPERVISOR] === '1') return {ok: true}
  if (platform === 'darwin') return macHypervisor(env)
  if (platform !== 'linux')
    return {ok: false, reason: `krunvm does not run on ${platform}`, fix: 'use a Linux host with KVM, or macOS on Apple silicon', noKvm: false}
  const c = checkHypervisor({platform, kvm, neededBy: ['krunvm']})
  return c.ok ? {ok: true} : {ok: false, reason: c.detail, fix: c.fix ?? INSTALL_FIX, noKvm: / does not exist/.test(c.detail)}
}

async function sysctl(name: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  // sysctl lives in /usr/sbin, which a PATH may leave out.
  const res = await tryRun(findBinary('sysctl', env) ?? '/usr/sbin/sysctl', ['-n', name], {env, extendEnv: false, timeoutMs: 10_000})
  return res.exitCode === 0 ? res.stdout.trim() : undefined
}

/**
 * macOS: libkrun needs Apple silicon (hw.optional.arm64 is 1 there, also when node runs under
 * Rosetta) and Hypervisor.framework (kern.hv_support is 0 inside most virtual Macs, such as CI
 * runners without nested virtualisation).
 */
async function macHypervisor(env: NodeJS.ProcessEnv): Promise<Hypervisor> {
  if ((await sysctl('hw.optional.arm64', env)) !== '1') {
    return {ok: false, reason: 'krunvm on macOS needs Apple silicon (sysctl hw.optional.arm64 is not 1)', fix: 'use an Apple-silicon Mac, or a Linux host (gvisor, or krunvm with KVM)', noKvm: false}
  }
  const hv = await sysctl('kern.hv_support', env)
  if (hv !== '1') {
    return {
      ok: false,
      reason: `Hypervisor.framework is not available (sysctl kern.hv_support is ${hv === undefined ? 'unreadable' : hv}): this is usually a virtual Mac without nested virtualisation`,
      fix: 'run agent on the Mac itself, or on a Linux host (gvisor, or krunvm with KVM)',
      noKvm: false,
    }
  }
  return {ok: true}
}

/** krunvm's `--version` line, asked once per binary (cached in `cache`). */
async function krunvmVersion(bin: string, env: NodeJS.ProcessEnv, cache: Map<string, string | undefined>): Promise<string | undefined> {
  if (cache.has(bin)) return cache.get(bin)
  let v: string | undefined
  // krunvm loads (and creates) its TOML before parsing argv: keep that away from the user's config.
  const xdg = mkdtempSync(join(tmpdir(), 'agent-krunvm-probe-'))
  try {
    const res = await tryRun(bin, ['--version'], {env: {...env, XDG_CONFIG_HOME: xdg}, extendEnv: false, timeoutMs: 10_000})
    if (res.exitCode === 0) v = res.stdout.trim().split('\n')[0] || undefined
  } finally {
    rmSync(xdg, {recursive: true, force: true})
  }
  cache.set(bin, v)
  return v
}

/** Whether agent can use krunvm here, and if not, why and what to do. */
export async function krunvmAvailability(env: NodeJS.ProcessEnv, platform: NodeJS.Platform, cache: Map<string, string | undefined>): Promise<Availability> {
  const bin = krunvmBinary(env)
  const hv = await hypervisor(env, platform)
  if (!bin) {
    const missing = missingBinaryReason(env)
    // Say both when both are missing: installing krunvm alone would not help.
    if (!hv.ok) return {ok: false, reason: `${missing}, and ${hv.reason}`, fix: `${hv.noKvm ? KVM_STEP : hv.fix} and ${INSTALL}, or use --launcher gvisor`}
    return {ok: false, reason: missing, fix: INSTALL_FIX}
  }
  const version = await krunvmVersion(bin, env, cache)
  if (!hv.ok) return {ok: false, version, reason: hv.reason, fix: hv.fix}
  if (platform === 'linux' && process.getuid?.() !== 0 && env.BUILDAH_ISOLATION === undefined) {
    return {
      ok: false,
      version,
      reason: 'krunvm on Linux refuses to run as a non-root user outside `buildah unshare`',
      fix: 'run agent as root, or inside `buildah unshare`, or use --launcher gvisor',
    }
  }
  if (!findBinary('buildah', env)) return {ok: false, version, reason: 'krunvm needs buildah on PATH, and it is not there', fix: 'install buildah (apt-get install buildah; macOS: brew install slp/krun/buildah)'}
  return {ok: true, version}
}

/** doctor's lines for krunvm: the binary, the hypervisor, and what the installed version allows. */
export async function krunvmChecks(host: HostProbe): Promise<HostCheck[]> {
  // krunvm loads (and creates) its TOML before it parses argv: point it at agent's own dir.
  mkdirSync(host.paths.krunvmConfigHome, {recursive: true, mode: 0o700})
  const {version, ...bin} = await checkBinary(
    {id: 'krunvm', cmd: 'krunvm', envVar: 'AGENT_KRUNVM', neededBy: ['krunvm'], fix: INSTALL_FIX, env: {XDG_CONFIG_HOME: host.paths.krunvmConfigHome}},
    host.env,
  )
  const hv: HostCheck =
    host.env[ASSUME_HYPERVISOR] === '1'
      ? {id: 'hypervisor', title: 'hypervisor', ok: true, detail: `not checked (${ASSUME_HYPERVISOR}=1, test only)`, neededBy: ['krunvm']}
      : host.platform === 'darwin'
        ? macHypervisorCheck(await macHypervisor(host.env))
        : checkHypervisor({platform: host.platform, kvm: host.roots.kvm, neededBy: ['krunvm']})
  if (!bin.ok) return [bin, hv]
  // What the installed version allows (krunvm's CLI changes between versions; version.ts).
  const f = krunvmFeatures(version, host.platform)
  const what: HostCheck = {id: 'krunvm-version', title: 'krunvm version', ok: true, detail: f.summary, neededBy: ['krunvm']}
  return [bin, hv, what]
}

function macHypervisorCheck(h: Hypervisor): HostCheck {
  const base = {id: 'hypervisor', title: 'hypervisor', neededBy: ['krunvm' as const]}
  return h.ok ? {...base, ok: true, detail: 'macOS Hypervisor.framework (Apple silicon, kern.hv_support 1)'} : {...base, ok: false, detail: h.reason, fix: h.fix}
}
