import type {Readable} from 'node:stream'
import type {StatePaths} from '../config/state-dir.js'
import {AgentError} from '../errors.js'
import type {LauncherName, VmRecord} from '../state/vm-record.js'

/**
 * The contract every launcher (gvisor, runc, krunvm, …) meets. Nothing above the launcher
 * floor names a launcher: services ask these methods and capabilities instead.
 */

export interface Availability {
  ok: boolean
  /** e.g. "runsc 0.0~20221219.0" */
  version?: string
  /** Why it cannot be used. */
  reason?: string
  /** What the user can do about it. */
  fix?: string
}

/** Everything a launcher needs to know about the host side of a VM. */
export interface LaunchContext {
  paths: StatePaths
  /** Absolute path of the built guest dir (holds `agent-init`), bind-mounted read-only at /.agent. */
  guestDir: string
  /** Extra environment every guest command gets (from the runtime plugin). */
  env: Readonly<Record<string, string>>
  /** Persist dir on the host, when the VM has one. */
  persistDir?: string
  /** Called as each step starts, so a failure can say which step failed. */
  step?: (name: string) => void
  /** Values of this launcher's own create options (LauncherOption.flag → value), as given. */
  options?: Readonly<Record<string, string>>
}

/**
 * A `vm create` option that only one launcher takes (`--gvisor-platform systrap`). The launcher
 * declares it (launchers/options.ts lists them); the command turns each into a flag and the
 * service refuses it for a VM of another launcher. Defaults from the environment are the
 * launcher's own business.
 */
export interface LauncherOption {
  launcher: LauncherName
  /** The flag, without dashes. */
  flag: string
  /** The values it takes; absent: any text, which the launcher checks itself (a namespace name). */
  values?: readonly string[]
  summary: string
}

/** What a launcher made, stored on the VM row so that clean can find it. */
export interface LauncherRefs {
  containerRef: string | null
  rootfsRef: string | null
  bundleRef: string | null
}

/** A terminal's size in character cells. */
export interface TtySize {
  rows: number
  cols: number
}

export interface ExecRequest {
  argv: readonly string[]
  env?: Readonly<Record<string, string>>
  workdir?: string
  /** Seconds; the whole process tree in the guest is killed when it runs out. 0: no timeout. */
  timeoutSec: number
  /** 'inherit' streams the caller's stdin; a stream is piped in; undefined gives /dev/null. */
  stdin?: 'inherit' | Readable
  /**
   * Run the command on a new PTY of this size in the guest (its controlling terminal; stdout and
   * stderr both arrive as stdout). Only for a launcher whose `capabilities.tty` is true. Stdin
   * bytes go to the PTY as they are: a caller in raw mode delivers ^C and ^D to the guest.
   */
  tty?: TtySize
  /**
   * With `tty`: the launcher hands its resize function over once the command runs; the caller
   * calls it when its terminal changes size (SIGWINCH). Returns what stops the calls.
   */
  onResize?: (resize: (size: TtySize) => void) => () => void
  /** 'inherit' streams live to our stdout/stderr; 'capture' keeps output (capped at maxCaptureBytes). */
  output: 'inherit' | 'capture'
  maxCaptureBytes?: number
  /**
   * Called with each chunk as it arrives, in capture mode too. A returned promise means "full":
   * the OCI launchers' exec channel stops reading the guest until it settles
   * (launchers/output-gate.ts), so the guest blocks on its output instead of the host buffering
   * it; the runtime-exec fallback and the other launchers take it as void.
   */
  onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void | PromiseLike<void>
  /** Aborts the command (Ctrl-C). */
  signal?: AbortSignal
  /**
   * The caller copies the guest's /out to the host afterwards (`--out`). A launcher whose guest
   * volumes are not host directories (kubernetes) fetches /out into the host out dir first.
   */
  outputs?: boolean
}

export interface ExecResult {
  exitCode: number
  timedOut: boolean
  /** The guest command was killed for running out of memory. */
  oom: boolean
  stdout: string
  stderr: string
  stdoutTruncated: boolean
  stderrTruncated: boolean
  durationMs: number
  /** The VM is no longer running after this command (say, gVisor's OOM took the sandbox and it would not boot again): why. */
  sandboxLost?: string
}

export type RuntimeState = 'running' | 'stopped' | 'missing'

/**
 * What a VM uses now, as far as its launcher can tell (`vm inspect`). A field the launcher cannot
 * read is absent, and `unknown` says which and why.
 */
export interface VmUsage {
  /** Memory charged to the sandbox now, and its peak (host cgroup: the guest plus the runtime's own). */
  memoryBytes?: number
  memoryPeakBytes?: number
  /** The sandbox's host memory limit. */
  memoryLimitBytes?: number
  /** CPU time used since boot, in seconds. */
  cpuSeconds?: number
  /** Processes or threads counted against the sandbox's pids limit. */
  pids?: number
  /** Used and total bytes of the VM's --disk. */
  diskUsedBytes?: number
  diskTotalBytes?: number
  /** When the running sandbox was booted (ISO time). */
  startedAt?: string
  /** What could not be read, and why: `{field: why}`. */
  unknown: Record<string, string>
}

/**
 * The host side of a guest path of a VM that is not running: '/' is its root filesystem, the
 * others are mounted over it in the guest (/out, /tmp, /in, /persist). These are guest-owned
 * trees: a reader must resolve every guest path inside them without following a link on the
 * host (services/vm-copy.ts does).
 */
export interface GuestMount {
  /** Absolute guest path: '/', '/out', ... */
  guest: string
  host: string
  readOnly: boolean
}

export interface SnapshotRequest {
  /** The image reference to commit to (checked already). */
  tag: string
  /** OCI labels for the image. */
  labels: Readonly<Record<string, string>>
}

export interface SnapshotResult {
  image: string
  /** The image id buildah gave it. */
  id: string
  /** How the VM was held still: paused (and resumed) while running, or it was not running. */
  held: 'paused' | 'not running'
}

/** Why a launcher cannot do something, and what the user can do instead. */
export interface Unsupported {
  why: string
  hint?: string
}

/** What a launcher can do; services check these instead of naming launchers. */
export interface LauncherCapabilities {
  /** Can boot a VM with no network at all (`--network none`). */
  networkNone: true | Unsupported
  /**
   * Enforces the egress policy: allow_all reaches only the public internet, `allow:LIST` and
   * `--allow-host` holes work. Without it the VM's network is whatever the launcher gives.
   */
  egressFilter: true | Unsupported
  /** Guest volumes (/in, /out, /persist) are mounted, so `--file` and `--out` reach the guest. */
  files: true | Unsupported
  /** remove() works from a VM id alone, so `clean --all` can sweep leftovers that have no row. */
  sweepsOrphans: boolean
  /** The runtime can attach an interactive terminal to a guest command. */
  tty: boolean
  /** Sandboxes run elsewhere (a cluster): --cpu and --mem are not bounded by this host's size. */
  remoteLimits?: boolean
}

/** One prerequisite on this host, as `agent doctor` prints it. */
export interface HostCheck {
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

/** Where host facts are read from; tests point these at fake trees. */
export interface HostRoots {
  /** /sys/fs/cgroup */
  cgroupRoot: string
  /** /proc/cgroups */
  procCgroups: string
  /** /dev/kvm */
  kvm: string
}

/** The host a launcher checks itself against. */
export interface HostProbe {
  paths: StatePaths
  env: NodeJS.ProcessEnv
  platform: NodeJS.Platform
  roots: HostRoots
}

export interface Launcher {
  readonly name: LauncherName
  /** Why one would choose it, one phrase: "a user-space kernel, VM-grade isolation without KVM". */
  readonly summary: string
  readonly capabilities: LauncherCapabilities
  available(): Promise<Availability>
  /** This launcher's prerequisites on the host (binaries and versions, kernel features). */
  checks(host: HostProbe): Promise<HostCheck[]>
  /** Makes the sandbox and boots it. Idempotent steps; on failure the VM service calls remove(). */
  create(vm: VmRecord, ctx: LaunchContext): Promise<LauncherRefs>
  /** Boots a stopped VM again with its files intact. */
  start(vm: VmRecord, ctx: LaunchContext): Promise<void>
  exec(vm: VmRecord, ctx: LaunchContext, req: ExecRequest): Promise<ExecResult>
  /** Ends the sandbox, keeping its root filesystem. Idempotent. */
  stop(vm: VmRecord, ctx: LaunchContext): Promise<void>
  /** Removes everything the launcher made for this VM. Idempotent: safe on half-made VMs. */
  remove(vm: VmRecord, ctx: LaunchContext): Promise<void>
  /** The runtime's view of each VM, in one call where the runtime allows. */
  status(vms: readonly VmRecord[], ctx: Pick<LaunchContext, 'paths'>): Promise<Map<string, RuntimeState>>
  /** What the VM uses now (cgroup counters, disk), as far as this launcher can tell; never throws for a missing counter. */
  usage(vm: VmRecord, ctx: LaunchContext): Promise<VmUsage>
  /**
   * The host view of a stopped VM's files, mounted if need be, for `vm cp` when no guest runs to
   * do it. Throws `unavailable` with the launcher's reason when it has no such view.
   */
  stoppedFiles(vm: VmRecord, ctx: LaunchContext): Promise<GuestMount[]>
  /**
   * Commits the VM's current filesystem (its changes on its image) to a local image. A running VM
   * is held still for a consistent copy and keeps running after. Throws `unavailable` with the
   * launcher's reason when it cannot.
   */
  snapshot(vm: VmRecord, ctx: LaunchContext, req: SnapshotRequest): Promise<SnapshotResult>
  /**
   * For a launcher whose sandboxes live elsewhere (a cluster): every VM of this state dir it can
   * find there, rows or not, rebuilt from what it recorded with them (labels, annotations), with
   * the status seen. `vm list` adds those without a row, so a lost database loses no sandbox and
   * `clean --all` removes them. Asks nothing remote unless this state dir has used the launcher.
   */
  discover?(ctx: Pick<LaunchContext, 'paths'>): Promise<VmRecord[]>
}

/** Throws the launcher's own explanation when it lacks a capability a request needs. */
export function requireCapability(l: Pick<Launcher, 'name' | 'capabilities'>, cap: 'networkNone' | 'egressFilter' | 'files', kind: 'usage' | 'unavailable', lead?: string): void {
  const c = l.capabilities[cap]
  if (c === true) return
  throw new AgentError(kind, lead ? `${lead}: ${c.why}` : c.why, {hint: c.hint})
}
