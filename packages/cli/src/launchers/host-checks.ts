/**
 * Host checks that more than one launcher needs: a binary and its version, KVM or
 * Hypervisor.framework, cgroups. Each launcher lists the ones it needs in its own checks().
 */
import {accessSync, constants, existsSync, readFileSync} from 'node:fs'
import {arch as osArch} from 'node:os'
import {join} from 'node:path'
import {errorMessage} from '../errors.js'
import type {LauncherName} from '../state/vm-record.js'
import {findBinary, tryRun} from '../system/index.js'
import {DNSMASQ_FIX, NFT_FIX} from './egress.js'
import type {HostCheck, HostProbe, HostRoots} from './launcher.js'
import type {OciRuntime} from './oci.js'

export interface BinarySpec {
  id: string
  cmd: string
  /** Env var that overrides the binary path. */
  envVar?: string
  versionArgs?: string[]
  neededBy: LauncherName[]
  fix: string
  /** Extra environment for the version call. */
  env?: Record<string, string>
}

/** Found on PATH (or at $envVar), and `--version` answers. */
export async function checkBinary(spec: BinarySpec, env: NodeJS.ProcessEnv): Promise<HostCheck & {version?: string}> {
  const base = {id: spec.id, title: spec.id, neededBy: spec.neededBy}
  const explicit = spec.envVar ? env[spec.envVar] : undefined
  const bin = findBinary(spec.cmd, env, explicit)
  if (!bin) return {...base, ok: false, detail: explicit ? `${spec.envVar}=${explicit} is not an executable file` : 'not found on PATH', fix: spec.fix}
  const args = spec.versionArgs ?? ['--version']
  const res = await tryRun(bin, args, {env: {...env, ...spec.env}, extendEnv: false, timeoutMs: 15_000})
  if (res.exitCode !== 0) {
    const why = (res.stderr || res.stdout).trim().split('\n')[0]
    return {...base, ok: false, detail: `${bin} ${args.join(' ')} failed: ${why || `exit ${res.exitCode}`}`, fix: spec.fix}
  }
  const version = (res.stdout || res.stderr).trim().split('\n')[0]
  return {...base, ok: true, detail: `${version} (${bin})`, version}
}

/** KVM on Linux, Hypervisor.framework on Apple silicon. */
export function checkHypervisor(o: {platform: NodeJS.Platform; kvm: string; neededBy: LauncherName[]}): HostCheck {
  const base = {id: 'hypervisor', title: 'hypervisor', neededBy: o.neededBy}
  if (o.platform === 'darwin') {
    return osArch() === 'arm64'
      ? {...base, ok: true, detail: 'macOS Hypervisor.framework (Apple silicon)'}
      : {...base, ok: false, detail: 'krunvm on macOS needs Apple silicon', fix: 'use an Apple silicon Mac, or a Linux host with gvisor'}
  }
  if (!existsSync(o.kvm)) {
    return {...base, ok: false, detail: `${o.kvm} does not exist (no KVM)`,
      fix: 'enable KVM (load kvm_intel/kvm_amd, or turn on nested virtualisation for this VM); without it use gvisor'}
  }
  try {
    accessSync(o.kvm, constants.R_OK | constants.W_OK)
  } catch {
    return {...base, ok: false, detail: `${o.kvm} is not readable and writable by uid ${process.getuid?.()}`, fix: 'add the user to the kvm group and log in again'}
  }
  return {...base, ok: true, detail: `${o.kvm} is usable`}
}

/** cgroup v2 (unified) or v1, and whether the memory and pids controllers are there. */
export function checkCgroups(roots: Pick<HostRoots, 'cgroupRoot' | 'procCgroups'>, neededBy: LauncherName[]): HostCheck {
  const base = {id: 'cgroups', title: 'cgroups', neededBy}
  const need = ['memory', 'pids']
  const fix = 'enable the memory and pids cgroup controllers (kernel command line `cgroup_enable=memory swapaccount=1`; on cgroup v2 delegate them in cgroup.subtree_control)'
  const v2File = join(roots.cgroupRoot, 'cgroup.controllers')
  if (existsSync(v2File)) {
    const have = readFileSync(v2File, 'utf8').trim().split(/\s+/).filter(Boolean)
    const missing = need.filter((c) => !have.includes(c))
    return missing.length
      ? {...base, ok: false, detail: `cgroup v2, missing controllers: ${missing.join(', ')} (have: ${have.join(' ') || 'none'})`, fix}
      : {...base, ok: true, detail: `cgroup v2 (${need.join(', ')} present)`}
  }
  let table = ''
  try {
    table = readFileSync(roots.procCgroups, 'utf8')
  } catch (err) {
    return {...base, ok: false, detail: `no cgroup v2 and cannot read ${roots.procCgroups}: ${errorMessage(err)}`, fix}
  }
  const enabled = new Set(
    table.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.trim().split(/\s+/)).filter((f) => f[3] === '1').map((f) => f[0]),
  )
  const missing = need.filter((c) => !enabled.has(c) || !existsSync(join(roots.cgroupRoot, c)))
  const hybrid = existsSync(join(roots.cgroupRoot, 'unified')) ? ' hybrid' : ''
  return missing.length
    ? {...base, ok: false, detail: `cgroup v1${hybrid}, missing or unmounted controllers: ${missing.join(', ')}`, fix}
    : {...base, ok: true, detail: `cgroup v1${hybrid} (${need.join(', ')} mounted)`}
}

/** What an OCI launcher (gvisor, runc) needs: its runtime, slirp4netns, nft, dnsmasq and cgroups. */
export async function ociHostChecks(rt: OciRuntime, host: HostProbe): Promise<HostCheck[]> {
  if (host.platform !== 'linux') return []
  const bin = await checkBinary({id: rt.spec, cmd: rt.bin, envVar: rt.binEnv, neededBy: [rt.name], fix: rt.fix}, host.env)
  const facts = bin.version ? rt.versionFacts?.(bin.version) : undefined
  if (facts) bin.detail += `; ${facts}`
  const slirp = await checkBinary(
    {id: 'slirp4netns', cmd: 'slirp4netns', neededBy: [rt.name], fix: 'install slirp4netns: `apt-get install slirp4netns` (needed for --network allow_all with gvisor and runc)'},
    host.env,
  )
  const nft = await checkBinary({id: 'nft', cmd: 'nft', neededBy: [rt.name], fix: `${NFT_FIX}; needed for --network allow_all and allow:LIST`}, host.env)
  const dnsmasq = await checkBinary({id: 'dnsmasq', cmd: 'dnsmasq', neededBy: [rt.name], fix: `${DNSMASQ_FIX}; needed for --network allow:DOMAINS`}, host.env)
  return [bin, slirp, nft, dnsmasq, checkCgroups(host.roots, [rt.name])]
}
