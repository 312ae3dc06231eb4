import {execa} from 'execa'
import {accessSync, constants, existsSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync} from 'node:fs'
import {arch as osArch} from 'node:os'
import {delimiter, join} from 'node:path'
import type {StatePaths} from '../config/state-dir.js'
import {AgentError, errorMessage} from '../errors.js'
import {imageStore} from '../images/storage.js'
import type {Launcher} from '../launchers/launcher.js'
import type {LauncherName} from '../state/vm-record.js'

/** One prerequisite of one or more launchers. */
export interface DoctorCheck {
  id: string
  title: string
  ok: boolean
  /** What was found (a version, a path, a list of controllers) or what is wrong. */
  detail: string
  /** What to do about it, when not ok. */
  fix?: string
  /** The launchers that need it. */
  neededBy: LauncherName[]
}

export interface LauncherReport {
  name: LauncherName
  ok: boolean
  version?: string
  reason?: string
  fix?: string
}

export interface DoctorReport {
  /** At least one launcher is usable. */
  ok: boolean
  stateDir: string
  /** The launcher `agent vm create` picks without --runtime: krunvm, else gvisor, else runc. */
  defaultLauncher: LauncherName | null
  defaultReason: string
  launchers: LauncherReport[]
  checks: DoctorCheck[]
}

/** Where host facts are read from; tests point these at fake trees. */
export interface HostRoots {
  /** /sys/fs/cgroup */
  cgroupRoot: string
  /** /proc/cgroups */
  procCgroups: string
  /** /dev/kvm */
  kvm: string
}

export interface DoctorOptions {
  paths: StatePaths
  /** The launchers to ask (the lead wires krunvm, gvisor and runc; tests may pass fakes). */
  launchers: ReadonlyArray<Pick<Launcher, 'name' | 'available'>>
  env?: NodeJS.ProcessEnv
  platform?: NodeJS.Platform
  roots?: Partial<HostRoots>
}

/** Preference order when nothing is asked for (launchers/select.ts uses the same). */
export const DEFAULT_ORDER: readonly LauncherName[] = ['krunvm', 'gvisor', 'runc']

interface BinarySpec {
  id: string
  /** Env var that overrides the binary path. */
  envVar?: string
  cmd: string
  versionArgs: string[]
  neededBy: LauncherName[]
  fix: string
  /** Not used on macOS. */
  linuxOnly?: boolean
}

const BINARIES: readonly BinarySpec[] = [
  {id: 'runsc', envVar: 'AGENT_RUNSC', cmd: 'runsc', versionArgs: ['--version'], neededBy: ['gvisor'], linuxOnly: true,
    fix: 'install gVisor: `apt-get install runsc`, or see https://gvisor.dev/docs/user_guide/install/'},
  {id: 'runc', envVar: 'AGENT_RUNC', cmd: 'runc', versionArgs: ['--version'], neededBy: ['runc'], linuxOnly: true, fix: 'install runc: `apt-get install runc`'},
  {id: 'krunvm', envVar: 'AGENT_KRUNVM', cmd: 'krunvm', versionArgs: ['--version'], neededBy: ['krunvm'],
    fix: 'install krunvm (macOS: scripts/macos/setup.sh; Linux: build containers/krunvm with libkrun and KVM), or use --runtime gvisor'},
  {id: 'buildah', envVar: 'AGENT_BUILDAH', cmd: 'buildah', versionArgs: ['--version'], neededBy: ['krunvm', 'gvisor', 'runc'],
    fix: 'install buildah: `apt-get install buildah` (macOS: `brew install buildah`)'},
  {id: 'slirp4netns', cmd: 'slirp4netns', versionArgs: ['--version'], neededBy: ['gvisor', 'runc'], linuxOnly: true,
    fix: 'install slirp4netns: `apt-get install slirp4netns` (needed for --network allow_all with gvisor and runc)'},
]

/** Finds a command the way a shell would, or takes an explicit path. */
export function findBinary(cmd: string, env: NodeJS.ProcessEnv, explicit?: string): string | undefined {
  const ok = (p: string) => {
    try {
      return statSync(p).isFile() && (accessSync(p, constants.X_OK), true)
    } catch {
      return false
    }
  }
  if (explicit) return ok(explicit) ? explicit : undefined
  for (const dir of (env.PATH ?? '').split(delimiter)) if (dir && ok(join(dir, cmd))) return join(dir, cmd)
  return undefined
}

async function checkBinary(spec: BinarySpec, o: Required<Pick<DoctorOptions, 'env' | 'platform'>> & {paths: StatePaths}): Promise<DoctorCheck> {
  const base = {id: spec.id, title: spec.id, neededBy: spec.neededBy}
  const explicit = spec.envVar ? o.env[spec.envVar] : undefined
  const bin = findBinary(spec.cmd, o.env, explicit)
  if (!bin) {
    return {...base, ok: false, detail: explicit ? `${spec.envVar}=${explicit} is not an executable file` : 'not found on PATH', fix: spec.fix}
  }
  // krunvm loads (and creates) its TOML before it parses argv: point it at agent's own dir.
  const extra = spec.id === 'krunvm' ? {XDG_CONFIG_HOME: o.paths.krunvmConfigHome} : {}
  if (spec.id === 'krunvm') mkdirSync(o.paths.krunvmConfigHome, {recursive: true, mode: 0o700})
  const res = await execa(bin, spec.versionArgs, {env: {...o.env, ...extra}, extendEnv: false, reject: false, stdin: 'ignore', timeout: 15_000})
  if (res.exitCode !== 0) {
    const why = String(res.stderr || res.stdout || res.shortMessage || '').trim().split('\n')[0]
    return {...base, ok: false, detail: `${bin} ${spec.versionArgs.join(' ')} failed: ${why || `exit ${res.exitCode}`}`, fix: spec.fix}
  }
  const version = String(res.stdout || res.stderr).trim().split('\n')[0]
  return {...base, ok: true, detail: `${version} (${bin})`}
}

function checkHypervisor(o: {env: NodeJS.ProcessEnv; platform: NodeJS.Platform; kvm: string}): DoctorCheck {
  const base = {id: 'hypervisor', title: 'hypervisor', neededBy: ['krunvm'] as LauncherName[]}
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
export function checkCgroups(roots: Pick<HostRoots, 'cgroupRoot' | 'procCgroups'>): DoctorCheck {
  const base = {id: 'cgroups', title: 'cgroups', neededBy: ['gvisor', 'runc'] as LauncherName[]}
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

function checkStateDir(paths: StatePaths): DoctorCheck {
  const base = {id: 'state-dir', title: 'state dir', neededBy: [...DEFAULT_ORDER]}
  const fix = 'set AGENT_STATE_DIR to a writable directory (for example AGENT_STATE_DIR=$HOME/.agent)'
  try {
    mkdirSync(paths.root, {recursive: true, mode: 0o700})
    // access(2) lies for root on read-only mounts: prove it with a write.
    const probe = join(paths.root, `.doctor-${process.pid}`)
    writeFileSync(probe, '')
    unlinkSync(probe)
    return {...base, ok: true, detail: `${paths.root} is writable`}
  } catch (err) {
    return {...base, ok: false, detail: `${paths.root} is not writable: ${errorMessage(err)}`, fix}
  }
}

async function checkBuildahStorage(paths: StatePaths, env: NodeJS.ProcessEnv): Promise<DoctorCheck> {
  const base = {id: 'image-storage', title: 'image storage', neededBy: [...DEFAULT_ORDER]}
  const bin = findBinary('buildah', env, env.AGENT_BUILDAH)
  if (!bin) return {...base, ok: false, detail: 'buildah is not installed, so image storage cannot be checked', fix: BINARIES[3].fix}
  let storeEnv: Record<string, string>
  try {
    storeEnv = imageStore(paths.root, env).env
  } catch (err) {
    return {...base, ok: false, detail: `cannot prepare agent's image storage config: ${errorMessage(err)}`, fix: 'check that the state dir is writable'}
  }
  const res = await execa(bin, ['info'], {env: {...env, ...storeEnv}, extendEnv: false, reject: false, stdin: 'ignore', timeout: 30_000})
  if (res.exitCode !== 0) {
    const why = String(res.stderr || res.stdout || res.shortMessage || '').trim().split('\n').slice(-1)[0]
    return {...base, ok: false, detail: `buildah info failed: ${why}`, fix: 'fix the containers-storage config (CONTAINERS_STORAGE_CONF) or run agent as root'}
  }
  let detail = 'buildah storage is usable'
  try {
    const info = JSON.parse(String(res.stdout)) as {store?: {GraphRoot?: string; GraphDriverName?: string}}
    if (info.store?.GraphRoot) detail = `${info.store.GraphDriverName ?? 'storage'} at ${info.store.GraphRoot}`
  } catch {
    // older buildah: plain text
  }
  if (storeEnv.CONTAINERS_STORAGE_CONF) detail += ` (agent's own: ${storeEnv.CONTAINERS_STORAGE_CONF})`
  return {...base, ok: true, detail}
}

/** Checks every launcher's prerequisites and says which launcher is the default, and why. */
export async function runDoctor(o: DoctorOptions): Promise<DoctorReport> {
  const env = o.env ?? process.env
  const platform = o.platform ?? process.platform
  const roots: HostRoots = {cgroupRoot: '/sys/fs/cgroup', procCgroups: '/proc/cgroups', kvm: '/dev/kvm', ...o.roots}

  const launchers: LauncherReport[] = await Promise.all(
    o.launchers.map(async (l) => {
      try {
        const a = await l.available()
        return {name: l.name, ok: a.ok, version: a.version, reason: a.ok ? undefined : a.reason ?? 'unavailable', fix: a.ok ? undefined : a.fix}
      } catch (err) {
        return {name: l.name, ok: false, reason: `availability check failed: ${errorMessage(err)}`}
      }
    }),
  )
  launchers.sort((a, b) => rank(a.name) - rank(b.name))

  const checks: DoctorCheck[] = []
  checks.push(checkStateDir(o.paths))
  for (const spec of BINARIES) {
    if (spec.linuxOnly && platform !== 'linux') continue
    checks.push(await checkBinary(spec, {env, platform, paths: o.paths}))
  }
  checks.push(checkHypervisor({env, platform, kvm: roots.kvm}))
  if (platform === 'linux') checks.push(checkCgroups(roots))
  checks.push(await checkBuildahStorage(o.paths, env))

  const {defaultLauncher, defaultReason} = pickDefault(launchers, env)
  return {ok: launchers.some((l) => l.ok), stateDir: o.paths.root, defaultLauncher, defaultReason, launchers, checks}
}

function rank(name: LauncherName): number {
  const i = DEFAULT_ORDER.indexOf(name)
  return i < 0 ? DEFAULT_ORDER.length : i
}

function pickDefault(launchers: readonly LauncherReport[], env: NodeJS.ProcessEnv): {defaultLauncher: LauncherName | null; defaultReason: string} {
  const skipped: string[] = []
  let chosen: LauncherReport | undefined
  for (const l of launchers) {
    if (l.ok) {
      chosen = l
      break
    }
    skipped.push(`${l.name} is not usable (${l.reason})`)
  }
  const override = env.AGENT_RUNTIME ? `; AGENT_RUNTIME=${env.AGENT_RUNTIME} overrides it for this environment` : ''
  if (!chosen) return {defaultLauncher: null, defaultReason: `no launcher is usable: ${skipped.join('; ')}`}
  const why = {
    krunvm: 'krunvm is usable: real microVMs with their own kernel',
    gvisor: 'gvisor is usable: a user-space kernel, VM-grade isolation without KVM',
    runc: 'runc is usable: plain containers, the weakest isolation',
  }[chosen.name]
  return {defaultLauncher: chosen.name, defaultReason: `${[...skipped, why].join('; ')}${override}`}
}

/** Human-readable report lines. */
export function renderDoctor(r: DoctorReport): string[] {
  const mark = (ok: boolean) => (ok ? 'ok ' : 'NO ')
  const width = Math.max(...r.checks.map((c) => c.title.length), ...r.launchers.map((l) => l.name.length), 8)
  const lines: string[] = ['Launchers']
  for (const l of r.launchers) {
    lines.push(`  ${mark(l.ok)} ${l.name.padEnd(width)}  ${l.ok ? (l.version ?? 'usable') : `${l.reason}${l.version ? ` [${l.version}]` : ''}`}`)
    if (!l.ok && l.fix) lines.push(`  ${' '.repeat(4 + width)}  fix: ${l.fix}`)
  }
  lines.push('', `Default launcher: ${r.defaultLauncher ?? 'none'}`, `  ${r.defaultReason}`, '', 'Host')
  for (const c of r.checks) {
    lines.push(`  ${mark(c.ok)} ${c.title.padEnd(width)}  ${c.detail}`)
    if (!c.ok) {
      lines.push(`  ${' '.repeat(4 + width)}  needed by: ${c.neededBy.join(', ')}`)
      if (c.fix) lines.push(`  ${' '.repeat(4 + width)}  fix: ${c.fix}`)
    }
  }
  return lines
}

/** The error `agent doctor` ends with when no launcher is usable (exit 5). */
export function doctorFailure(r: DoctorReport): AgentError {
  const fixes = r.launchers.filter((l) => l.fix).map((l) => `${l.name}: ${l.fix}`)
  return new AgentError('unavailable', `no launcher is usable on this host: ${r.launchers.map((l) => `${l.name}: ${l.reason}`).join('; ')}`, {
    hint: fixes.join('; ') || 'see the checks above',
  })
}

/** The real launchers, each loaded on its own so that one broken module cannot hide the others. */
export async function hostLaunchers(): Promise<Array<Pick<Launcher, 'name' | 'available'>>> {
  const {launcher} = await import('../launchers/select.js')
  return Promise.all(
    DEFAULT_ORDER.map(async (name) => {
      try {
        return await launcher(name)
      } catch (err) {
        return {name, available: async () => ({ok: false, reason: `cannot load the ${name} launcher: ${errorMessage(err)}`})}
      }
    }),
  )
}
