/**
 * One guest command through `runsc exec` / `runc exec` and agent-init: streams, the deadline,
 * Ctrl-C, and the out-of-memory verdict from the host cgroup's counter.
 */
import {randomBytes} from 'node:crypto'
import {constants as osConstants} from 'node:os'
import {ExitCode, unavailable} from '../errors.js'
import {logger} from '../logging/logger.js'
import type {VmRecord} from '../state/vm-record.js'
import {CappedOutput, start, TailBuffer, tryRun} from '../system/index.js'
import {oomKills} from './host-cgroups.js'
import type {ExecRequest, ExecResult, LaunchContext} from './launcher.js'
import {containerName, type OciRuntime} from './oci.js'
import {DEFAULT_PATH, INIT_PATH} from './oci-spec.js'

export const DEFAULT_MAX_CAPTURE = 1024 * 1024
/** Host-side grace beyond the guest's own timeout before we kill the runtime exec process. */
const HOST_GRACE_MS = 5_000

export async function ociExec(rt: OciRuntime, vm: VmRecord, root: string, ctx: LaunchContext, req: ExecRequest): Promise<ExecResult> {
  const started = Date.now()
  const name = containerName(vm.id)
  const tag = randomBytes(6).toString('hex')
  const timeoutSec = Math.max(1, Math.ceil(req.timeoutSec))
  const env: Record<string, string> = {PATH: DEFAULT_PATH, HOME: '/root', HOSTNAME: vm.id, ...ctx.env, ...req.env}
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
  timers.push(setTimeout(() => escalate('deadline'), timeoutSec * 1000 + HOST_GRACE_MS))
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

  // OOM: the host memory cgroup's oom_kill counter (cgroup v1 memory.oom_control).
  // runc: the kernel killed a guest process; it is ours when the command died of SIGKILL.
  // runsc: gVisor has no guest OOM killer here; the host kills the sentry, i.e. the whole
  // sandbox dies (runsc exec then fails with "WaitPID ... EOF"). start() brings it back.
  let oom = false
  if (!timedOut && oomKills(vm.id) > oomBefore) {
    if (rt.spec === 'runsc' || exitCode === ExitCode.OutOfMemory) {
      oom = true
      exitCode = ExitCode.OutOfMemory
    }
  }
  return {
    exitCode,
    timedOut,
    oom,
    stdout: out.text(),
    stderr: err.text(),
    stdoutTruncated: out.truncated,
    stderrTruncated: err.truncated,
    durationMs: Date.now() - started,
  }
}
