import {accessSync, constants, readdirSync, readFileSync, statSync} from 'node:fs'
import {delimiter, join} from 'node:path'

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Whether a process exists (EPERM means it does, owned by someone else). */
export function alive(pid: number | null | undefined): boolean {
  if (!pid || pid <= 0) return false
  if (pid === process.pid) return true
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * The pid in a helper's pid file while that pid is still the helper: `isOurs` checks its argv
 * (/proc/<pid>/cmdline), so a recycled pid is never taken for it and never signalled.
 */
export function pidFromFile(file: string, isOurs: (argv: readonly string[]) => boolean): number | undefined {
  let pid: number
  try {
    pid = Number(readFileSync(file, 'utf8').trim())
  } catch {
    return undefined
  }
  if (!Number.isInteger(pid) || pid <= 1) return undefined
  return pidIs(pid, isOurs) ? pid : undefined
}

/** Whether pid is (still) a process whose argv (/proc/<pid>/cmdline) `isOurs` accepts. */
export function pidIs(pid: number, isOurs: (argv: readonly string[]) => boolean): boolean {
  try {
    return isOurs(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0'))
  } catch {
    return false // gone, or not ours to read
  }
}

/**
 * Every process whose argv (/proc/<pid>/cmdline) `isOurs` accepts: for a helper whose pid file
 * was never written (its starter was killed in between) or was lost.
 */
export function pidsWhere(isOurs: (argv: readonly string[]) => boolean): number[] {
  const pids: number[] = []
  let entries: string[]
  try {
    entries = readdirSync('/proc')
  } catch {
    return pids
  }
  for (const e of entries) {
    const pid = Number(e)
    if (Number.isInteger(pid) && pid > 1 && pid !== process.pid && pidIs(pid, isOurs)) pids.push(pid)
  }
  return pids
}

/** Signals a process, or the whole group it leads; a process already gone is not an error. */
export function signalProcess(pid: number, sig: NodeJS.Signals, group = false): void {
  try {
    process.kill(group ? -pid : pid, sig)
  } catch {
    if (!group) return
    try {
      process.kill(pid, sig)
    } catch {
      // gone
    }
  }
}

/**
 * SIGTERM, then SIGKILL once `graceMs` has passed, then waits (bounded) for it to be gone.
 * `isAlive` can say "gone" sooner than kill(0), which still sees an unreaped child (a zombie).
 */
export async function killProcess(pid: number, o: {group?: boolean; graceMs?: number; isAlive?: () => boolean} = {}): Promise<void> {
  const running = o.isAlive ?? (() => alive(pid))
  if (!running()) return
  signalProcess(pid, 'SIGTERM', o.group)
  const deadline = Date.now() + (o.graceMs ?? 2_000)
  while (running() && Date.now() < deadline) await sleep(20)
  if (running()) signalProcess(pid, 'SIGKILL', o.group)
  const until = Date.now() + 2_000
  while (running() && Date.now() < until) await sleep(20)
}

/** Finds a command the way a shell would, or checks an explicit path. */
export function findBinary(cmd: string, env: NodeJS.ProcessEnv = process.env, explicit?: string): string | undefined {
  const ok = (p: string) => {
    try {
      return statSync(p).isFile() && (accessSync(p, constants.X_OK), true)
    } catch {
      return false
    }
  }
  if (explicit) return ok(explicit) ? explicit : undefined
  if (cmd.includes('/')) return ok(cmd) ? cmd : undefined
  for (const dir of (env.PATH ?? '').split(delimiter)) if (dir && ok(join(dir, cmd))) return join(dir, cmd)
  return undefined
}

/** A process pinned by its start time (/proc/<pid>/stat field 22), so that a reused pid is never taken for it. */
export interface PinnedProcess {
  pid: number
  start: string
}

/** State letter and start time from /proc/<pid>/stat, or undefined when there is no such process. */
export function processStat(pid: number): {state: string; start: string} | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The name (field 2) may hold spaces and parentheses: count from the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return {state: f[0] ?? '', start: f[19] ?? ''}
  } catch {
    return undefined
  }
}

export function pinProcess(pid: number): PinnedProcess | undefined {
  const s = processStat(pid)
  return s ? {pid, start: s.start} : undefined
}

/**
 * Ended: gone, a zombie (it has released its memory, files and mounts, and waits only for its
 * parent to collect it) or its pid now belongs to another process.
 */
export function processEnded(p: PinnedProcess): boolean {
  const s = processStat(p.pid)
  return !s || s.state === 'Z' || s.state === 'X' || s.start !== p.start
}

/** Polls /proc (no program started) until every process has ended; false when `ms` ran out first. */
export async function waitEnded(procs: readonly PinnedProcess[], ms: number, everyMs = 10): Promise<boolean> {
  const until = Date.now() + ms
  for (;;) {
    if (procs.every(processEnded)) return true
    if (Date.now() >= until) return false
    await sleep(everyMs)
  }
}
