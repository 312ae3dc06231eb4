/**
 * What an OCI runtime (runsc, runc) knows about one container, and ending it. The runtime is
 * asked once (`state`), told once (`kill`); the waiting is done by watching the sandbox's host
 * processes in /proc, with no program started per poll.
 */
import {existsSync, readdirSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {errorMessage} from '../errors.js'
import {logger} from '../logging/logger.js'
import {pinProcess, type PinnedProcess, processEnded, processStat, type RunResult, waitEnded} from '../system/index.js'
import {cgroupsPath} from './oci-spec.js'

/** Runs one runtime subcommand (with the runtime's global flags), tolerating failure. */
export type RuntimeCall = (args: readonly string[]) => Promise<RunResult>

export interface ContainerState {
  /** 'running' | 'stopped' | 'created' | 'paused' | … as the runtime says it. */
  status: string
  /** The sandbox's host process (runsc: the sentry; runc: the container's init). */
  pid?: number
}

export interface ContainerRow {
  id: string
  status?: string
  /** runc says when it was created; runsc does not. */
  created?: string
  pid?: number
}

/** The runtime's `list`: every container it knows, in one call; rows undefined when it did not answer. */
export async function listContainers(call: RuntimeCall): Promise<{rows?: ContainerRow[]; res: RunResult}> {
  const res = await call(['list', '--format', 'json'])
  if (res.exitCode !== 0) return {res}
  const doc = JSON.parse(res.stdout || 'null') as unknown
  return {rows: Array.isArray(doc) ? (doc as ContainerRow[]) : [], res}
}

/** SIGTERM's grace before SIGKILL, and how long a SIGKILL is given to take. */
export const TERM_GRACE_MS = 2_000
const KILL_WAIT_MS = 2_000
const MAX_STATE_FILE = 1024 * 1024

/**
 * Whether the runtime root holds anything naming the container (runc: `<root>/<name>/`; runsc:
 * `<root>/<name>_sandbox:<name>.state`, its lock and socket). Without any, the runtime does not
 * know the container and need not be asked. When in doubt (root unreadable), true.
 */
export function hasRuntimeState(root: string, name: string): boolean {
  try {
    return readdirSync(root).some((e) => e.includes(name))
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT'
  }
}

/** The runtime's `state` of the container, or undefined when it does not know it. */
export async function containerState(call: RuntimeCall, name: string): Promise<ContainerState | undefined> {
  const res = await call(['state', name])
  if (res.exitCode !== 0) return undefined
  try {
    const doc = JSON.parse(res.stdout) as {status?: unknown; pid?: unknown}
    const pid = typeof doc.pid === 'number' && Number.isInteger(doc.pid) && doc.pid > 0 ? doc.pid : undefined
    return {status: typeof doc.status === 'string' ? doc.status : 'unknown', pid}
  } catch (err) {
    logger().debug(`state ${name}: ${errorMessage(err)}`)
    return {status: 'unknown'}
  }
}

/** The state as the runtime's own files give it, and the host processes to watch. */
export interface FileState extends ContainerState {
  procs: PinnedProcess[]
}

/**
 * The container's state read from the runtime's own files, as its `state` command would report
 * it, with no program started; undefined when the files are not in a layout known here (the
 * caller then asks the runtime).
 *  - runc: `<root>/<name>/state.json`: init_process_pid and init_process_start (/proc's start
 *    time, so a reused pid is not taken for it). Running while that process lives; created while
 *    exec.fifo is there; paused while its freezer cgroup is frozen; else stopped.
 *  - runsc: `<root>/<name>_sandbox:<name>.state`: the status runsc last wrote, which holds only
 *    while the sandbox process lives; sandbox.pid and goferPid.
 * A wrong "running" costs only time: `kill` then fails, and the caller deletes at once.
 */
export function stateFromFiles(root: string, name: string, id: string, frozen: (id: string) => boolean = cgroupFrozen): FileState | undefined {
  const runc = readJson(join(root, name, 'state.json')) as {init_process_pid?: unknown; init_process_start?: unknown} | undefined
  if (runc) {
    const pid = runc.init_process_pid
    if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 1) return undefined
    const p = {pid, start: String(runc.init_process_start ?? '')}
    if (processEnded(p)) return {status: 'stopped', pid, procs: []}
    const status = existsSync(join(root, name, 'exec.fifo')) ? 'created' : frozen(id) ? 'paused' : 'running'
    return {status, pid, procs: [p]}
  }
  const runsc = readJson(join(root, `${name}_sandbox:${name}.state`)) as {status?: unknown; goferPid?: unknown; sandbox?: {pid?: unknown}} | undefined
  if (!runsc) return undefined
  const sandboxPid = runsc.sandbox?.pid
  if (typeof runsc.status !== 'string' || typeof sandboxPid !== 'number' || !Number.isInteger(sandboxPid)) return undefined
  const sandbox = sandboxPid > 1 ? pinProcess(sandboxPid) : undefined
  if (!sandbox || processStat(sandboxPid)?.state === 'Z') return {status: runsc.status === 'created' || runsc.status === 'running' || runsc.status === 'paused' ? 'stopped' : runsc.status, pid: sandboxPid, procs: []}
  const gofer = typeof runsc.goferPid === 'number' && Number.isInteger(runsc.goferPid) && runsc.goferPid > 1 ? pinProcess(runsc.goferPid) : undefined
  return {status: runsc.status, pid: sandboxPid, procs: gofer ? [sandbox, gofer] : [sandbox]}
}

/**
 * What `list` would say of these containers, from the runtime's files: a container the root does
 * not name is not listed. Undefined when any of them cannot be read so (ask the runtime then).
 */
export function listFromFiles(root: string, containers: ReadonlyArray<{id: string; name: string}>): ContainerRow[] | undefined {
  const rows: ContainerRow[] = []
  for (const c of containers) {
    if (!hasRuntimeState(root, c.name)) continue
    const st = stateFromFiles(root, c.name, c.id)
    if (!st) return undefined
    rows.push({id: c.name, status: st.status, pid: st.pid})
  }
  return rows
}

function readJson(path: string): unknown {
  try {
    const text = readFileSync(path, 'utf8')
    return text.length <= MAX_STATE_FILE ? (JSON.parse(text) as unknown) : undefined
  } catch {
    return undefined
  }
}

/** The VM's cgroup is frozen (runc pause): cgroup v1 freezer.state, or v2 cgroup.freeze. */
function cgroupFrozen(id: string): boolean {
  const read = (p: string) => {
    try {
      return readFileSync(p, 'utf8').trim()
    } catch {
      return ''
    }
  }
  return read(`/sys/fs/cgroup/freezer${cgroupsPath(id)}/freezer.state`) === 'FROZEN' || read(`/sys/fs/cgroup${cgroupsPath(id)}/cgroup.freeze`) === '1'
}

/**
 * The host processes that make up the sandbox: the pid the runtime reported and, for runsc, its
 * gofer (from runsc's own state file; the gofer holds the root filesystem open until it ends).
 */
export function sandboxProcesses(root: string, name: string, pid: number | undefined): PinnedProcess[] {
  const pids = new Set<number>()
  if (pid) pids.add(pid)
  try {
    const text = readFileSync(join(root, `${name}_sandbox:${name}.state`), 'utf8')
    if (text.length <= MAX_STATE_FILE) {
      const doc = JSON.parse(text) as {goferPid?: unknown; sandbox?: {pid?: unknown}}
      for (const p of [doc.goferPid, doc.sandbox?.pid]) if (typeof p === 'number' && Number.isInteger(p) && p > 1) pids.add(p)
    }
  } catch {
    // runc, or another runsc layout: the reported pid is what there is.
  }
  return [...pids].map(pinProcess).filter((p): p is PinnedProcess => p !== undefined)
}

/**
 * Ends a running container: SIGTERM to its init (agent-init exits cleanly and the sandbox with
 * it), SIGKILL when it has not ended after `graceMs`. True once its host processes have ended
 * (gone, or zombies waiting for their parent to collect them: nothing of the VM is in use then).
 */
export async function endContainer(call: RuntimeCall, root: string, name: string, state: ContainerState, graceMs = TERM_GRACE_MS, procs = sandboxProcesses(root, name, state.pid)): Promise<boolean> {
  // Refused: not running after all (the caller's delete --force ends whatever is there).
  if ((await call(['kill', name, 'TERM'])).exitCode !== 0) return false
  // Without a pid to watch, the runtime's own view is all there is.
  const ended = procs.length ? () => waitEnded(procs, graceMs) : () => waitStopped(call, name, graceMs)
  if (await ended()) return true
  await call(['kill', name, 'KILL'])
  return procs.length ? waitEnded(procs, KILL_WAIT_MS) : waitStopped(call, name, KILL_WAIT_MS)
}

async function waitStopped(call: RuntimeCall, name: string, ms: number): Promise<boolean> {
  const until = Date.now() + ms
  for (;;) {
    const st = await containerState(call, name)
    if (st?.status !== 'running') return true
    if (Date.now() >= until) return false
    await new Promise((r) => setTimeout(r, 100))
  }
}
