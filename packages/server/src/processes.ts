/**
 * envd's process table for one sandbox: each process is one exec through the VM service, owned
 * by the server, so it goes on when the client that started it disconnects. Clients follow
 * its events (Start, Connect); output produced while nobody follows is not replayed (as envd).
 */
import {PassThrough} from 'node:stream'
import {Code, ConnectError} from '@connectrpc/connect'
import {errorMessage, logger, type ServiceContext, type VmRecord} from './floor.js'
import {argvCommand, DEFAULT_HOME, DEFAULT_USER, MAX_EXEC_SEC, runInGuest} from './guest.js'

export type ProcEvent =
  | {case: 'start'; value: {pid: number}}
  | {case: 'data'; value: {output: {case: 'stdout' | 'stderr'; value: Uint8Array}}}
  | {case: 'end'; value: {exitCode: number; exited: boolean; status: string; error?: string}}
  | {case: 'keepalive'; value: Record<string, never>}

export interface ProcConfig {
  cmd: string
  args: string[]
  envs: Record<string, string>
  cwd?: string
}

export class Proc {
  readonly listeners = new Set<(e: ProcEvent) => void>()
  end?: Extract<ProcEvent, {case: 'end'}>
  readonly abort = new AbortController()
  killedBy?: 'SIGKILL' | 'SIGTERM'
  readonly done: Promise<void>
  private resolveDone!: () => void

  constructor(
    readonly pid: number,
    readonly config: ProcConfig,
    readonly tag: string | undefined,
    readonly stdin: PassThrough | undefined,
  ) {
    this.done = new Promise((r) => (this.resolveDone = r))
  }

  emit(e: ProcEvent): void {
    if (e.case === 'end') {
      this.end = e
      this.resolveDone()
    }
    for (const l of this.listeners) l(e)
  }

  subscribe(l: (e: ProcEvent) => void): () => void {
    this.listeners.add(l)
    return () => this.listeners.delete(l)
  }
}

export interface StartSpec {
  config: ProcConfig
  tag?: string
  stdin: boolean
  /** Seconds; 0: none. */
  timeoutSec: number
  /** The sandbox's env vars (create's envVars), under the process's own. */
  sandboxEnv: Record<string, string>
  username?: string
}

/**
 * The SDK runs every command as \`/bin/bash -l -c CMD\`. A login shell sources /etc/profile,
 * which resets PATH (hiding the runtime's own, such as /usr/local/go/bin) and forks \`id\` and
 * \`run-parts\`: about 40 ms per command under gVisor. The runtime's environment is already
 * what a login would give, so the command runs with \`bash -c\` in it instead.
 */
export function withoutLogin(argv: string[]): string[] {
  if (argv.length === 4 && /^(\/usr)?\/bin\/bash$/.test(argv[0]) && argv[1] === '-l' && argv[2] === '-c') return [argv[0], '-c', argv[3]]
  return argv
}

export class ProcessTable {
  private readonly procs = new Map<number, Proc>()
  private nextPid = 1000

  constructor(
    private readonly ctx: ServiceContext,
    private readonly vm: VmRecord,
  ) {}

  list(): Proc[] {
    return [...this.procs.values()].filter((p) => !p.end)
  }

  find(sel: {case?: string; value?: unknown} | undefined): Proc {
    let p: Proc | undefined
    if (sel?.case === 'pid') p = this.procs.get(sel.value as number)
    else if (sel?.case === 'tag') p = [...this.procs.values()].find((x) => x.tag === sel.value && !x.end)
    if (!p || p.end) throw new ConnectError(`process ${sel?.case === 'tag' ? `with tag ${String(sel.value)}` : String(sel?.value)} not found`, Code.NotFound)
    return p
  }

  /** Starts the process; `follow` is subscribed before anything can happen, so it sees every event. */
  start(spec: StartSpec, follow: (e: ProcEvent) => void): Proc {
    if (spec.tag && [...this.procs.values()].some((p) => p.tag === spec.tag && !p.end)) throw new ConnectError(`a process with tag ${spec.tag} is already running`, Code.AlreadyExists)
    const pid = this.nextPid++
    const stdin = spec.stdin ? new PassThrough() : undefined
    const p = new Proc(pid, spec.config, spec.tag, stdin)
    p.subscribe(follow)
    this.procs.set(pid, p)
    const home = spec.username === 'root' ? '/root' : DEFAULT_HOME
    const env = {HOME: home, USER: spec.username ?? DEFAULT_USER, ...spec.sandboxEnv, ...spec.config.envs}
    const cmd = argvCommand(withoutLogin([spec.config.cmd, ...spec.config.args]))
    p.emit({case: 'start', value: {pid}})
    runInGuest(this.ctx, this.vm, {
      cmd,
      env,
      cwd: spec.config.cwd || home,
      stdin,
      timeoutSec: spec.timeoutSec > 0 ? spec.timeoutSec : MAX_EXEC_SEC,
      signal: p.abort.signal,
      maxCaptureBytes: 1,
      onOutput: (stream, chunk) => p.emit({case: 'data', value: {output: {case: stream, value: new Uint8Array(chunk)}}}),
    })
      .then((r) => {
        if (p.killedBy || r.timedOut) {
          p.emit({case: 'end', value: {exitCode: -1, exited: false, status: 'signal: killed', error: r.timedOut ? 'the process ran past its timeout (Connect-Timeout-Ms) and was killed' : undefined}})
        } else {
          p.emit({case: 'end', value: {exitCode: r.exitCode, exited: true, status: `exit status ${r.exitCode}`, error: r.oom ? 'killed for exceeding the sandbox memory limit' : undefined}})
        }
      })
      .catch((err) => {
        logger().debug(`${this.vm.id}: process ${pid} failed: ${errorMessage(err)}`)
        p.emit({case: 'end', value: {exitCode: -1, exited: false, status: 'error', error: errorMessage(err)}})
      })
      .finally(() => {
        stdin?.destroy()
        // Keep ended processes briefly so a late Connect still sees the end.
        setTimeout(() => this.procs.delete(pid), 5_000).unref()
      })
    return p
  }

  signal(p: Proc, sig: 'SIGKILL' | 'SIGTERM'): void {
    p.killedBy = sig
    p.abort.abort()
  }

  input(p: Proc, data: Uint8Array): void {
    if (!p.stdin) throw new ConnectError(`process ${p.pid} was started without stdin`, Code.FailedPrecondition)
    if (p.stdin.writableEnded) throw new ConnectError(`stdin of process ${p.pid} is closed`, Code.FailedPrecondition)
    p.stdin.write(Buffer.from(data))
  }

  closeStdin(p: Proc): void {
    if (!p.stdin) throw new ConnectError(`process ${p.pid} was started without stdin`, Code.FailedPrecondition)
    p.stdin.end()
  }

  /** Kills everything (the sandbox is gone or the server stops). */
  killAll(): void {
    for (const p of this.procs.values()) if (!p.end) this.signal(p, 'SIGKILL')
  }
}

/** Events waiting for one client, in order. */
export class EventQueue {
  readonly items: ProcEvent[] = []
  wake?: () => void
  push = (e: ProcEvent): void => {
    this.items.push(e)
    this.wake?.()
  }
}

/** Follows a running (or just ended) process from now on: start, then its later events. */
export function attach(p: Proc): {queue: EventQueue; unsub: () => void} {
  const queue = new EventQueue()
  queue.push({case: 'start', value: {pid: p.pid}})
  const unsub = p.subscribe(queue.push)
  if (p.end) queue.push(p.end) // ended before we subscribed: the listener will not get it
  return {queue, unsub}
}

/**
 * A process's events as a stream for one client: `start` first, then data, keep-alives while
 * quiet, and `end`. The client going away (signal) ends only this stream, not the process.
 */
export async function* drain(queue: EventQueue, signal: AbortSignal, keepaliveMs: number, unsub: () => void): AsyncGenerator<ProcEvent> {
  const onAbort = () => queue.wake?.()
  signal.addEventListener('abort', onAbort, {once: true})
  try {
    while (!signal.aborted) {
      if (queue.items.length === 0) {
        let timer: NodeJS.Timeout | undefined
        const quiet = await new Promise<boolean>((res) => {
          queue.wake = () => res(false)
          timer = setTimeout(() => res(true), keepaliveMs)
        })
        clearTimeout(timer)
        queue.wake = undefined
        if (quiet && !signal.aborted) yield {case: 'keepalive', value: {}}
        continue
      }
      const e = queue.items.shift()!
      yield e
      if (e.case === 'end') return
    }
  } finally {
    unsub()
    signal.removeEventListener('abort', onAbort)
  }
}
