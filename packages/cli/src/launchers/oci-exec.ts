/**
 * One guest command: over agent-init's exec channel (guest-channel.ts) when the VM has one,
 * else through `runsc exec` / `runc exec` and `agent-init exec` (VMs booted before the channel,
 * or a channel that does not answer). Both: streams, the deadline, Ctrl-C, and the
 * out-of-memory verdict from the host cgroup's counter.
 */
import {randomBytes} from 'node:crypto'
import {constants as osConstants} from 'node:os'
import type {Readable} from 'node:stream'
import {AgentError, errorMessage, ExitCode, unavailable} from '../errors.js'
import {logger} from '../logging/logger.js'
import type {VmRecord} from '../state/vm-record.js'
import {CappedOutput, findBinary, start, TailBuffer, tryRun} from '../system/index.js'
import {OutputGate} from './output-gate.js'
import {ChannelError, type ChannelExit, type ChannelProcess, channelSocketPath, type GuestChannel, openChannel} from './guest-channel.js'
import {oomKills} from './host-cgroups.js'
import type {ExecRequest, ExecResult, LaunchContext, TtySize} from './launcher.js'
import {containerName, type OciRuntime} from './oci.js'
import {DEFAULT_PATH, INIT_PATH} from './oci-spec.js'

export const DEFAULT_MAX_CAPTURE = 1024 * 1024
/** Host-side grace beyond the guest's own timeout before we kill the runtime exec process. */
const HOST_GRACE_MS = 5_000

/** Connect + hello must answer within this, or the runtime's exec is used instead. */
const CHANNEL_HELLO_MS = 5_000

export async function ociExec(rt: OciRuntime, vm: VmRecord, root: string, ctx: LaunchContext, req: ExecRequest): Promise<ExecResult> {
  const started = Date.now()
  // The channel needs no runtime binary, but stop, clean and the OOM reboot do: a missing one is
  // said at once, as every other command says it (a PATH lookup, no program started).
  if (!findBinary(rt.bin)) throw unavailable(`${rt.bin} is not installed`, rt.fix)
  let ch: GuestChannel | undefined
  if (process.env.AGENT_EXEC_CHANNEL === 'off') {
    // For comparison (npm run bench) and as an escape hatch.
    logger().debug(`${vm.id}: AGENT_EXEC_CHANNEL=off; using ${rt.bin} exec`)
  } else {
    try {
      // The exec goes out behind the hello, in one round trip (see OpenOptions.pipeline).
      ch = await openChannel(channelSocketPath(ctx.paths.vmDir(vm.id)), {timeoutMs: CHANNEL_HELLO_MS, pipeline: true})
    } catch (err) {
      // Nothing ran yet, so the runtime's exec is a safe fallback.
      logger().debug(`${vm.id}: exec channel not usable (${errorMessage(err)}); falling back to ${rt.bin} exec`)
    }
  }
  if (ch) {
    try {
      return await channelExec(ch, rt, vm, ctx, req, started)
    } catch (err) {
      if (!(err instanceof ChannelError && (err.stage === 'connect' || err.stage === 'hello'))) throw err
      logger().debug(`${vm.id}: exec channel not usable before the command ran (${err.message}); falling back to ${rt.bin} exec`)
    }
  }
  return runtimeExec(rt, vm, root, ctx, req, started)
}

function guestEnv(vm: VmRecord, ctx: LaunchContext, req: ExecRequest): Record<string, string> {
  return {PATH: DEFAULT_PATH, HOME: '/root', HOSTNAME: vm.id, ...ctx.env, ...req.env}
}

/**
 * Over the channel. Timeouts and exit reasons are the guest's report; the host's own deadline
 * (timeout + grace) and Ctrl-C close the connection, which makes agent-init kill the whole tree,
 * as does this process dying. A channel that breaks mid-command is an error, never a re-run.
 */
async function channelExec(ch: GuestChannel, rt: OciRuntime, vm: VmRecord, ctx: LaunchContext, req: ExecRequest, started: number): Promise<ExecResult> {
  // 0: no deadline at all (an interactive session), neither the guest's nor ours.
  const timeoutSec = req.timeoutSec > 0 ? Math.max(1, Math.ceil(req.timeoutSec)) : 0
  const max = req.maxCaptureBytes ?? DEFAULT_MAX_CAPTURE
  const capture = req.output === 'capture'
  const out = new CappedOutput(max)
  const err = new CappedOutput(max)
  const oomBefore = oomKills(vm.id)
  logger().debug(`${vm.id}: exec over the channel: ${req.argv.join(' ')}`)
  let p: ChannelProcess
  // A full consumer stops our reading of the guest; agent-init in turn stops reading the command.
  const gate = new OutputGate(
    () => p.pause(),
    () => p.resume(),
  )
  try {
    p = ch.exec(
      {argv: req.argv, env: guestEnv(vm, ctx, req), cwd: req.workdir, timeoutMs: timeoutSec * 1000, stdin: Boolean(req.stdin), pty: req.tty && ttySize(req.tty)},
      {
        onStdout: (b) => {
          if (capture) out.push(b)
          else gate.write(process.stdout, b)
          gate.hold(req.onOutput?.('stdout', b))
        },
        onStderr: (b) => {
          if (capture) err.push(b)
          else gate.write(process.stderr, b)
          gate.hold(req.onOutput?.('stderr', b))
        },
      },
    )
  } catch (e) {
    // The request could not be encoded (say, too large): nothing was sent.
    ch.close()
    throw new ChannelError('connect', errorMessage(e))
  }

  const source: Readable | undefined = req.stdin === 'inherit' ? process.stdin : req.stdin
  // Stdin is read only once agent-init has said hello: a fallback must find it unread.
  const stdinReady = ch.ready.then(
    () => true,
    () => false,
  )
  const onData = (b: Buffer) => {
    if (!p.write(b)) {
      source?.pause()
      void p.drain().then(() => source?.resume())
    }
  }
  const onEnd = () => p.closeStdin()
  let stdinOn = false
  let settled = false
  void stdinReady.then((ok) => {
    if (!ok || !source || settled) return
    stdinOn = true
    source.on('data', onData)
    source.once('end', onEnd)
    source.once('error', onEnd)
    source.resume()
  })

  let hostKilled: 'deadline' | 'abort' | undefined
  const kill = (why: 'deadline' | 'abort') => {
    hostKilled ??= why
    p.abort()
  }
  const timer = timeoutSec ? setTimeout(() => kill('deadline'), timeoutSec * 1000 + HOST_GRACE_MS) : undefined
  // The caller's terminal changed size: tell the guest's PTY (only once the hello is answered).
  const unResize = req.tty
    ? req.onResize?.((size) => {
        void stdinReady.then((ok) => {
          if (ok && !settled) {
            const s = ttySize(size)
            p.resize(s.rows, s.cols)
          }
        })
      })
    : undefined
  const onAbort = () => kill('abort')
  if (req.signal?.aborted) onAbort()
  req.signal?.addEventListener('abort', onAbort, {once: true})

  let exit: ChannelExit | undefined
  let broke: unknown
  try {
    exit = await p.done
  } catch (e) {
    broke = e
  } finally {
    settled = true
    clearTimeout(timer)
    unResize?.()
    req.signal?.removeEventListener('abort', onAbort)
    if (source && stdinOn) {
      source.off('data', onData)
      source.off('end', onEnd)
      source.off('error', onEnd)
      if (source === process.stdin) process.stdin.pause()
    }
  }

  let exitCode: number
  let timedOut = false
  if (exit) {
    exitCode = exit.reason === 'exit' ? exit.code : exit.reason === 'signal' ? 128 + exit.code : ExitCode.Timeout
    timedOut = exit.reason === 'timeout'
  } else if (hostKilled === 'deadline') {
    exitCode = ExitCode.Timeout
    timedOut = true
  } else if (hostKilled === 'abort') {
    exitCode = ExitCode.Interrupted
  } else if (broke instanceof ChannelError && broke.stage === 'hello') {
    throw broke // nothing ran: the caller falls back to the runtime's exec
  } else if (rt.oomKillsSandbox && oomKills(vm.id) > oomBefore) {
    // gVisor: the host's OOM killer took the sentry, and the channel with it.
    exitCode = ExitCode.OutOfMemory
  } else {
    throw new AgentError('internal', `exec in ${vm.id}: the guest's exec channel broke before reporting an exit: ${errorMessage(broke)}`, {
      hint: 'guest code can kill or replace agent-init\'s channel; `agent vm exec` uses the runtime exec when the channel does not answer',
    })
  }
  return {...finishOom(rt, vm, exitCode, timedOut, oomBefore), stdout: out.text(), stderr: err.text(), stdoutTruncated: out.truncated, stderrTruncated: err.truncated, durationMs: Date.now() - started}
}

/** A PTY size the guest takes (1..65535 each); a terminal that reports 0 gets the classic 24x80. */
function ttySize(s: TtySize): TtySize {
  const fit = (n: number, dflt: number) => (Number.isFinite(n) && n >= 1 ? Math.min(65_535, Math.round(n)) : dflt)
  return {rows: fit(s.rows, 24), cols: fit(s.cols, 80)}
}

/**
 * OOM: the host memory cgroup's oom_kill counter (cgroup v1 memory.oom_control); the guest
 * cannot tell it. runc: the kernel killed a guest process; it is ours when the command died of
 * SIGKILL. runsc on ptrace: the host kills the sentry, i.e. the whole sandbox dies (the exec then
 * fails, no exit is reported) and start() brings it back; on systrap only the culprit dies.
 */
function finishOom(rt: OciRuntime, vm: VmRecord, exitCode: number, timedOut: boolean, oomBefore: number): {exitCode: number; timedOut: boolean; oom: boolean} {
  if (!timedOut && oomKills(vm.id) > oomBefore && (rt.spec === 'runsc' || exitCode === ExitCode.OutOfMemory)) return {exitCode: ExitCode.OutOfMemory, timedOut, oom: true}
  return {exitCode, timedOut, oom: false}
}

/** Through `runsc exec` / `runc exec` and `agent-init exec` (the way before the channel). */
async function runtimeExec(rt: OciRuntime, vm: VmRecord, root: string, ctx: LaunchContext, req: ExecRequest, started: number): Promise<ExecResult> {
  if (req.tty) {
    // Nothing has run yet. A terminal needs the channel's PTY: the runtime's exec path pipes output through us.
    throw new AgentError('unavailable', `VM ${vm.id} cannot attach a terminal: its exec channel does not answer, and the ${rt.bin} exec fallback has no terminal`, {
      hint: process.env.AGENT_EXEC_CHANNEL === 'off' ? 'unset AGENT_EXEC_CHANNEL=off' : `restart the VM (\`agent vm stop ${vm.id}\` then \`agent vm start ${vm.id}\`), or run the command without -t`,
    })
  }
  const name = containerName(vm.id)
  const tag = randomBytes(6).toString('hex')
  // agent-init exec takes --timeout 0 as no deadline.
  const timeoutSec = req.timeoutSec > 0 ? Math.max(1, Math.ceil(req.timeoutSec)) : 0
  const env = guestEnv(vm, ctx, req)
  const args = [...rt.globalArgs(root), 'exec']
  if (req.workdir) args.push('--cwd', req.workdir)
  for (const [k, v] of Object.entries(env)) args.push('--env', `${k}=${v}`)
  args.push(name, INIT_PATH, 'exec', '--timeout', String(timeoutSec), '--tag', tag, '--', ...req.argv)

  const oomBefore = oomKills(vm.id)
  const max = req.maxCaptureBytes ?? DEFAULT_MAX_CAPTURE
  const capture = req.output === 'capture'
  logger().debug(`${rt.bin} exec ${name} ${req.argv.join(' ')}`)
  // Output always through our pipes: runsc writes a donated regular-file fd at its own offset,
  // so `agent vm exec ... > log 2>&1` would interleave stdout over stderr.
  const proc = start(rt.bin, args, {stdin: req.stdin === 'inherit' ? 'inherit' : req.stdin ? 'pipe' : 'ignore'})
  const killByTag = () => tryRun(rt.bin, [...rt.globalArgs(root), 'exec', name, INIT_PATH, 'kill', '--tag', tag], {timeoutMs: 30_000})
  const errTail = new TailBuffer(4096)
  if (req.stdin && req.stdin !== 'inherit' && proc.stdin) {
    proc.stdin.on('error', () => undefined) // the guest may exit without reading it all
    req.stdin.pipe(proc.stdin)
  }
  const out = new CappedOutput(max)
  const err = new CappedOutput(max)
  // Read as it comes, never held back (unlike the channel): once the runtime process exits, its
  // pipes get only a moment before they are closed (below), and a paused one would lose output.
  proc.stdout?.on('data', (b: Buffer) => {
    if (capture) out.push(b)
    else process.stdout.write(b)
    req.onOutput?.('stdout', b)
  })
  proc.stderr?.on('data', (b: Buffer) => {
    errTail.push(b)
    if (capture) err.push(b)
    else process.stderr.write(b)
    req.onOutput?.('stderr', b)
  })

  // The runtime forwards SIGTERM/SIGINT to agent-init, which kills the whole guest tree.
  // If the runtime itself is stuck, SIGKILL it and kill the tree by tag from a fresh exec.
  let hostKilled: 'deadline' | 'abort' | undefined
  const timers: NodeJS.Timeout[] = []
  const escalate = (why: 'deadline' | 'abort') => {
    if (hostKilled) return
    hostKilled = why
    proc.kill(why === 'abort' ? 'SIGINT' : 'SIGTERM')
    timers.push(
      setTimeout(() => {
        proc.kill('SIGKILL')
        void killByTag()
      }, 3_000),
    )
  }
  if (timeoutSec) timers.push(setTimeout(() => escalate('deadline'), timeoutSec * 1000 + HOST_GRACE_MS))
  const onAbort = () => escalate('abort')
  if (req.signal?.aborted) onAbort()
  req.signal?.addEventListener('abort', onAbort, {once: true})
  // Daemons the command leaves behind may hold the pipes open; once the runtime process
  // has exited, give the pipes a moment to drain and then stop waiting for them.
  proc.once('exit', () => {
    timers.push(
      setTimeout(() => {
        proc.stdout?.destroy()
        proc.stderr?.destroy()
      }, 250),
    )
  })

  const res = await proc
  for (const t of timers) clearTimeout(t)
  req.signal?.removeEventListener('abort', onAbort)
  // Not every runtime forwards the signal (runsc 20221219 exits on SIGINT and leaves the guest
  // command running): make sure by killing the tree by tag from a fresh exec (idempotent).
  if (hostKilled) await killByTag()
  if (!proc.pid || (res as {code?: string}).code === 'ENOENT') throw unavailable(`${rt.bin} is not installed`, rt.fix)

  let exitCode = res.exitCode ?? (res.signal ? 128 + (osConstants.signals[res.signal as keyof typeof osConstants.signals] ?? 0) : 1)
  // A timeout is a fact: agent-init reports it naming this exec's tag, or the host's own deadline fired.
  const guestTimedOut = exitCode === ExitCode.Timeout && errTail.toString().includes(`killed the command (exec ${tag})`)
  const timedOut = hostKilled === 'deadline' || guestTimedOut
  if (timedOut) exitCode = ExitCode.Timeout
  else if (hostKilled === 'abort') exitCode = ExitCode.Interrupted

  // OOM (see finishOom): under runsc the dying sandbox makes runsc exec fail with "WaitPID ... EOF".
  return {
    ...finishOom(rt, vm, exitCode, timedOut, oomBefore),
    stdout: out.text(),
    stderr: err.text(),
    stdoutTruncated: out.truncated,
    stderrTruncated: err.truncated,
    durationMs: Date.now() - started,
  }
}
