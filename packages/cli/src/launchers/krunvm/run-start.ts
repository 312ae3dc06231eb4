/**
 * One `krunvm start`: boots the VM, runs one guest command, streams its output, and ends it on
 * timeout or abort (SIGTERM to krunvm's process group, then SIGKILL after a grace time).
 */
import {constants as osConstants} from 'node:os'
import {unavailable} from '../../errors.js'
import {CappedOutput, didNotStart, signalProcess, start, TailBuffer} from '../../system/index.js'
import type {ExecRequest, ExecResult} from '../launcher.js'
import {INSTALL_FIX} from './host.js'

/** Output kept for telling krunvm's own failure messages from the guest's. */
const TAIL_BYTES = 8192
const DEFAULT_MAX_CAPTURE = 16 * 1024 * 1024

export interface StartRun {
  bin: string
  /** `krunvm start …` arguments (see startArgv). */
  args: readonly string[]
  /** krunvm's whole environment. */
  env: Readonly<Record<string, string | undefined>>
  req: ExecRequest
  /** Time between SIGTERM and SIGKILL. */
  graceMs: number
  /** Called once krunvm runs, with its pid and whether it leads its own process group. */
  onStarted?: (pid: number, group: boolean) => void
}

export interface StartOutcome {
  /** What exec returns: 124 on timeout, 130 on abort, else krunvm's exit code (128+n for a signal). */
  result: ExecResult
  /** Ended by agent (timeout or abort): the exit code says nothing about krunvm or the guest. */
  ended: boolean
  /** The signal that ended krunvm, if any. */
  signal?: string
  /** The last few KiB of each stream, for classifying a failure. */
  stdoutTail: string
  stderrTail: string
}

export async function runKrunvmStart(o: StartRun): Promise<StartOutcome> {
  const {req} = o
  const t0 = performance.now()
  // Its own process group (unless it reads our terminal), so a kill reaches everything it started.
  const group = req.stdin !== 'inherit'
  const sub = start(o.bin, o.args, {
    env: o.env,
    extendEnv: false,
    detached: group,
    stdin: req.stdin === 'inherit' ? 'inherit' : req.stdin ? 'pipe' : 'ignore',
  })
  if (sub.pid) o.onStarted?.(sub.pid, group)
  if (req.stdin && req.stdin !== 'inherit' && sub.stdin) {
    sub.stdin.on('error', () => undefined)
    req.stdin.pipe(sub.stdin)
  }

  const max = req.maxCaptureBytes ?? DEFAULT_MAX_CAPTURE
  const cap = {stdout: new CappedOutput(max), stderr: new CappedOutput(max)}
  const tail = {stdout: new TailBuffer(TAIL_BYTES), stderr: new TailBuffer(TAIL_BYTES)}
  for (const stream of ['stdout', 'stderr'] as const) {
    sub[stream]?.on('data', (b: Buffer) => {
      tail[stream].push(b)
      req.onOutput?.(stream, b)
      if (req.output === 'capture') cap[stream].push(b)
      else (stream === 'stdout' ? process.stdout : process.stderr).write(b)
    })
  }

  let timedOut = false
  let aborted = false
  let graceTimer: NodeJS.Timeout | undefined
  const terminate = () => {
    if (!sub.pid || graceTimer) return
    signalProcess(sub.pid, 'SIGTERM', group)
    graceTimer = setTimeout(() => signalProcess(sub.pid!, 'SIGKILL', group), o.graceMs)
  }
  const timer = setTimeout(() => {
    timedOut = true
    terminate()
  }, Math.max(0, req.timeoutSec) * 1000)
  const onAbort = () => {
    aborted = true
    terminate()
  }
  if (req.signal?.aborted) onAbort()
  else req.signal?.addEventListener('abort', onAbort, {once: true})

  const res = await sub
  clearTimeout(timer)
  if (graceTimer) clearTimeout(graceTimer)
  req.signal?.removeEventListener('abort', onAbort)
  // Leave nothing behind from krunvm's process group.
  if (group && sub.pid) signalProcess(sub.pid, 'SIGKILL', true)
  const durationMs = Math.round(performance.now() - t0)

  const result = (exitCode: number, extra: Partial<ExecResult> = {}): ExecResult => ({
    exitCode,
    timedOut: false,
    oom: false,
    stdout: req.output === 'capture' ? cap.stdout.text() : '',
    stderr: req.output === 'capture' ? cap.stderr.text() : '',
    stdoutTruncated: cap.stdout.truncated,
    stderrTruncated: cap.stderr.truncated,
    durationMs,
    ...extra,
  })
  const tails = {stdoutTail: tail.stdout.toString(), stderrTail: tail.stderr.toString(), signal: res.signal ?? undefined}
  if (timedOut) return {result: result(124, {timedOut: true}), ended: true, ...tails}
  if (aborted) return {result: result(130), ended: true, ...tails}
  if (didNotStart(res)) throw unavailable(`cannot run krunvm (${o.bin}): ${res.shortMessage ?? res.message ?? 'spawn failed'}`, INSTALL_FIX)
  return {result: result(res.exitCode ?? 128 + signalNumber(res.signal)), ended: false, ...tails}
}

function signalNumber(sig: string | undefined): number {
  return (sig ? (osConstants.signals as Record<string, number>)[sig] : undefined) ?? 1
}
