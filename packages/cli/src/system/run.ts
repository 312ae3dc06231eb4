/**
 * The one home for running host programs (buildah, runsc, runc, krunvm, mount, losetup, …).
 * Every call gets the same treatment: a missing binary is an `unavailable` error naming the fix,
 * a failure carries the last lines of output, timeouts end in SIGKILL after a grace period.
 */
import {execa, type ResultPromise} from 'execa'
import {AgentError, type ErrorKind, unavailable} from '../errors.js'
import {logger} from '../logging/logger.js'
import {lastLines} from './output.js'

export interface RunOptions {
  /** What the call is for, in words ("runsc delete agent-x"): error messages start with it. */
  what?: string
  /** Kill the program (SIGTERM, then SIGKILL 5 s later) after this long. */
  timeoutMs?: number
  /** The whole environment (nothing is inherited) when `extendEnv` is false; else added to ours. */
  env?: Readonly<Record<string, string | undefined>>
  extendEnv?: boolean
  /** Written to stdin; without it stdin is /dev/null. */
  input?: string
  cwd?: string
  /** Aborting kills the program. */
  signal?: AbortSignal
  /** Output to an open file descriptor instead of a pipe (for daemons that outlive the call). */
  stdoutFd?: number
  stderrFd?: number
  /** Start in a new session: signals to our process group or terminal do not reach it. */
  detached?: boolean
  /** Each line of stdout and stderr, as it arrives. */
  onLine?: (line: string) => void
  /** How to put right a missing binary ("apt-get install runsc"). */
  fix?: string
  /** Error kind of a non-zero exit (default internal). */
  kind?: ErrorKind
}

export interface RunResult {
  exitCode: number
  stdout: string
  stderr: string
  /** stdout and stderr interleaved as they came. */
  all: string
  timedOut: boolean
  /** The binary could not be started (missing, not executable). */
  missing: boolean
  signal?: string
}

/** Runs `bin args` and returns whatever happened; never throws for the program's own failure. */
export async function tryRun(bin: string, args: readonly string[], o: RunOptions = {}): Promise<RunResult> {
  logger().debug(`${bin} ${args.join(' ')}`)
  const piped = o.stdoutFd === undefined && o.stderrFd === undefined
  const proc = execa(bin, args, {
    env: o.env as Record<string, string> | undefined,
    extendEnv: o.extendEnv ?? true,
    reject: false,
    all: piped,
    timeout: o.timeoutMs,
    forceKillAfterDelay: 5_000,
    input: o.input,
    stdin: o.input === undefined ? 'ignore' : undefined,
    stdout: o.stdoutFd === undefined ? 'pipe' : fd(o.stdoutFd),
    stderr: o.stderrFd === undefined ? 'pipe' : fd(o.stderrFd),
    cancelSignal: o.signal,
    cwd: o.cwd,
    detached: o.detached,
  }) as ResultPromise<{reject: false; all: true}>
  if (o.onLine) forEachLine(proc.all, o.onLine)
  const res = await proc
  const code = (res as {code?: string}).code
  return {
    exitCode: res.exitCode ?? (res.signal ? 128 : 1),
    stdout: String(res.stdout ?? ''),
    stderr: String(res.stderr ?? ''),
    all: String(res.all ?? ''),
    timedOut: Boolean(res.timedOut),
    missing: code === 'ENOENT' || code === 'EACCES',
    signal: res.signal ?? undefined,
  }
}

/** Runs `bin args` and returns stdout; a failure is a typed AgentError with the output's last lines. */
export async function run(bin: string, args: readonly string[], o: RunOptions = {}): Promise<string> {
  const res = await tryRun(bin, args, o)
  checkResult(bin, args, res, o)
  return res.stdout
}

/** Throws the AgentError a failed result stands for (missing binary, timeout, non-zero exit). */
export function checkResult(bin: string, args: readonly string[], res: RunResult, o: Pick<RunOptions, 'what' | 'fix' | 'kind' | 'timeoutMs'> = {}): void {
  const what = o.what ?? `${bin} ${args[0] ?? ''}`.trim()
  if (res.missing) throw missingBinary(bin, o.fix)
  if (res.timedOut) throw new AgentError(o.kind ?? 'internal', `${what} timed out after ${Math.round((o.timeoutMs ?? 0) / 1000)}s`)
  if (res.exitCode !== 0) throw new AgentError(o.kind ?? 'internal', `${what} failed: ${lastLines(res.all || res.stderr || res.stdout) || `exit ${res.exitCode}`}`)
}

export function missingBinary(bin: string, fix?: string): AgentError {
  return unavailable(`${bin} is not installed (or not executable)`, fix)
}

export interface StartOptions {
  env?: Readonly<Record<string, string | undefined>>
  extendEnv?: boolean
  /** 'inherit' reads our terminal; 'pipe' gives a writable child.stdin; 'ignore' is /dev/null. */
  stdin: 'inherit' | 'pipe' | 'ignore'
  /** Start in a new session and process group (so a kill of the group reaches all it started). */
  detached?: boolean
  /** Extra pipes after stdio (fd 3 …), e.g. a readiness pipe. */
  extraPipes?: number
  stdoutFd?: number
  stderrFd?: number
}

/** A running program whose output the caller streams itself (exec, daemons). */
export type Child = ResultPromise<{reject: false; buffer: false}>

/** Starts a long-running program and hands back the child; the caller owns its streams. */
export function start(bin: string, args: readonly string[], o: StartOptions): Child {
  logger().debug(`${bin} ${args.map((a) => (a.length > 120 ? `${a.slice(0, 120)}...` : a)).join(' ')}`)
  const extra = Array.from({length: o.extraPipes ?? 0}, () => 'pipe' as const)
  const child = execa(bin, args, {
    env: o.env as Record<string, string> | undefined,
    extendEnv: o.extendEnv ?? true,
    reject: false,
    buffer: false,
    detached: o.detached,
    cleanup: !o.detached,
    stdio: [o.stdin, o.stdoutFd === undefined ? 'pipe' : fd(o.stdoutFd), o.stderrFd === undefined ? 'pipe' : fd(o.stderrFd), ...extra],
  }) as unknown as Child
  return child
}

/** Whether a settled child failed to start at all (ENOENT/EACCES) rather than ran and exited. */
export function didNotStart(res: {exitCode?: number; signal?: string; code?: string}): boolean {
  const code = (res as {code?: string}).code
  return code === 'ENOENT' || code === 'EACCES' || (res.exitCode === undefined && !res.signal)
}

function forEachLine(stream: NodeJS.ReadableStream | undefined, onLine: (line: string) => void): void {
  let rest = ''
  stream?.on('data', (b: Buffer) => {
    const lines = (rest + b.toString()).split('\n')
    rest = lines.pop() ?? ''
    for (const line of lines) if (line.trim()) onLine(line.replace(/\r$/, ''))
  })
  stream?.on('end', () => rest.trim() && onLine(rest))
}

/** execa's types accept only literal fd numbers; any open descriptor works at runtime. */
function fd(n: number): 'pipe' {
  return n as unknown as 'pipe'
}
