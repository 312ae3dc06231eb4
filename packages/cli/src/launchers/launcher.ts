import type {Readable} from 'node:stream'
import type {StatePaths} from '../config/state-dir.js'
import type {LauncherName, VmRecord} from '../state/vm-record.js'

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
}

/** What a launcher made, stored on the VM row so that clean can find it. */
export interface LauncherRefs {
  containerRef: string | null
  rootfsRef: string | null
  bundleRef: string | null
}

export interface ExecRequest {
  argv: readonly string[]
  env?: Readonly<Record<string, string>>
  workdir?: string
  /** Seconds; the whole process tree in the guest is killed when it runs out. */
  timeoutSec: number
  /** 'inherit' streams the caller's stdin; a stream is piped in; undefined gives /dev/null. */
  stdin?: 'inherit' | Readable
  /** 'inherit' streams live to our stdout/stderr; 'capture' keeps output (capped at maxCaptureBytes). */
  output: 'inherit' | 'capture'
  maxCaptureBytes?: number
  /** Called with each chunk as it arrives, in capture mode too. */
  onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void
  /** Aborts the command (Ctrl-C). */
  signal?: AbortSignal
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
}

export type RuntimeState = 'running' | 'stopped' | 'missing'

export interface Launcher {
  readonly name: LauncherName
  available(): Promise<Availability>
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
  /** Whether guest volumes (/in, /out, /persist) are mounted, so --file can work. */
  readonly supportsFiles: boolean
}
