/**
 * `--launcher kubernetes`: one pod per VM on a Kubernetes cluster, with a RuntimeClass (gVisor
 * by default, or Kata), placed by the cluster's own scheduler. Never chosen by default.
 * docs/scale-out.md has the design, the permissions it needs and its limits.
 *
 * This module stays cheap to load (vm list and doctor load every launcher): the client library
 * is imported by ops.ts, checks.ts and the exec modules, only when a cluster is touched.
 */
import {randomBytes} from 'node:crypto'
import {existsSync, readdirSync, rmSync} from 'node:fs'
import {join} from 'node:path'
import {resolveStateDir} from '../../config/state-dir.js'
import {AgentError, errorMessage, ExitCode, unavailable} from '../../errors.js'
import {logger} from '../../logging/logger.js'
import type {LauncherName, VmRecord} from '../../state/vm-record.js'
import {CappedOutput} from '../../system/index.js'
import type {
  Availability, ExecRequest, ExecResult, GuestMount, HostCheck, HostProbe, LaunchContext, Launcher, LauncherCapabilities, LauncherRefs, RuntimeState, SnapshotResult, VmUsage,
} from '../launcher.js'
import {fileSettings, kubeconfigPath, resolveSettings, usedMarker} from './config.js'
import {framedStdinArgv, guestArgv, killArgv} from './guest-command.js'
import {podName} from './pod-spec.js'

const DEFAULT_MAX_CAPTURE = 1024 * 1024
/** Beyond the guest's own deadline, before we give up on the exec from our side. */
const HOST_GRACE_MS = 10_000

export class KubernetesLauncher implements Launcher {
  readonly name: LauncherName = 'kubernetes'
  readonly summary = 'pods on a Kubernetes cluster with a gVisor or Kata RuntimeClass, placed by its scheduler'
  readonly capabilities: LauncherCapabilities = {
    networkNone: true,
    // NetworkPolicies: enforced only by a CNI that implements them (docs/scale-out.md); domain names are refused.
    egressFilter: true,
    files: true,
    // Leftovers are found by label through discover(), not guessed from an id.
    sweepsOrphans: false,
    tty: false,
    // The cluster's scheduler says what fits (Unschedulable), not this host's size.
    remoteLimits: true,
  }

  async available(): Promise<Availability> {
    try {
      const root = resolveStateDir(process.env)
      const s = resolveSettings(root, process.env)
      const {connect} = await import('./client.js')
      const c = connect(s)
      return {ok: true, version: `context ${c.context}, ${c.server}, namespace ${c.namespace}`}
    } catch (err) {
      const hint = err instanceof AgentError ? err.hint : undefined
      let file = '~/.kube/config'
      try {
        file = kubeconfigPath(process.env, fileSettings(resolveStateDir(process.env)))
      } catch {
        // the message below says what is wrong
      }
      return {ok: false, reason: errorMessage(err), fix: hint ?? `point AGENT_K8S_KUBECONFIG (or KUBECONFIG) at a kubeconfig for the cluster (looked at ${file})`}
    }
  }

  async checks(host: HostProbe): Promise<HostCheck[]> {
    const {k8sChecks} = await import('./checks.js')
    return k8sChecks(host)
  }

  async create(vm: VmRecord, ctx: LaunchContext): Promise<LauncherRefs> {
    const ops = await import('./ops.js')
    return {containerRef: await ops.createVmObjects(vm, ctx), rootfsRef: null, bundleRef: null}
  }

  async start(vm: VmRecord, ctx: LaunchContext): Promise<void> {
    const ops = await import('./ops.js')
    const t = ops.targetFor(ctx.paths, vm.id)
    // A pod left from before (a stop that did not finish) is replaced.
    await ops.deletePod(t, vm.id, true)
    try {
      await ops.bootPod(t, vm, ctx)
    } catch (err) {
      await ops.deletePod(t, vm.id, false).catch((e) => logger().warn(`${vm.id}: removing the pod that did not start: ${errorMessage(e)}`))
      throw err
    }
  }

  async stop(vm: VmRecord, ctx: LaunchContext): Promise<void> {
    const ops = await import('./ops.js')
    ctx.step?.('delete pod')
    await ops.deletePod(ops.targetFor(ctx.paths, vm.id), vm.id, true)
  }

  async remove(vm: VmRecord, ctx: LaunchContext): Promise<void> {
    const ops = await import('./ops.js')
    ctx.step?.('delete pod, policies and volume claim')
    await ops.removeVmObjects(ops.targetFor(ctx.paths, vm.id), vm.id)
  }

  async status(vms: readonly VmRecord[], ctx: Pick<LaunchContext, 'paths'>): Promise<Map<string, RuntimeState>> {
    const ops = await import('./ops.js')
    return ops.vmStates(vms, ctx.paths)
  }

  async discover(ctx: Pick<LaunchContext, 'paths'>): Promise<VmRecord[]> {
    // A state dir that never used the launcher asks no cluster (and loads no client library).
    if (!existsSync(usedMarker(ctx.paths))) return []
    const ops = await import('./ops.js')
    return ops.discoverVms(ctx.paths)
  }

  async exec(vm: VmRecord, ctx: LaunchContext, req: ExecRequest): Promise<ExecResult> {
    if (req.tty) throw unavailable('the kubernetes launcher cannot attach a terminal to a guest command', 'run it without -t')
    const started = Date.now()
    const [ops, {podExec}, files] = await Promise.all([import('./ops.js'), import('./exec.js'), import('./files.js')])
    const {c} = ops.targetFor(ctx.paths, vm.id)
    const pod = podName(vm.id)
    // --file: the host's in dir goes to the pod's /in, then is emptied (the pod keeps them).
    const inDir = ctx.paths.inDir(vm.id)
    if (await files.sendDir(c, pod, inDir, '/in')) for (const f of readdirSync(inDir)) rmSync(join(inDir, f), {recursive: true, force: true})

    const tag = randomBytes(8).toString('hex')
    let argv = guestArgv({argv: req.argv, env: {...ctx.env, ...req.env}, workdir: req.workdir, timeoutSec: req.timeoutSec, tag})
    const stdin = req.stdin === 'inherit' ? process.stdin : req.stdin
    // A stream's end must reach the command. v5 says it with a close frame; on v4 stdin is framed.
    // Which one the server speaks is known after one exec: a harmless one asks when need be.
    // Which one the server speaks is asked afresh by each agent process (a harmless exec), never
    // remembered across them: a server that drops v5 later would leave a command waiting for an end.
    if (stdin && !c.protocol) await podExec(c, pod, ['/bin/sh', '-c', ':'], {onStdout: () => undefined, onStderr: () => undefined})
    const framed = Boolean(stdin) && c.protocol !== 'v5.channel.k8s.io'
    if (framed) argv = framedStdinArgv(argv)
    const max = req.maxCaptureBytes ?? DEFAULT_MAX_CAPTURE
    const out = new CappedOutput(max)
    const err = new CappedOutput(max)
    const sink = (stream: 'stdout' | 'stderr') => (b: Buffer) => {
      req.onOutput?.(stream, b)
      if (req.output === 'capture') (stream === 'stdout' ? out : err).push(b)
      else (stream === 'stdout' ? process.stdout : process.stderr).write(b)
    }
    const ours = new AbortController()
    let deadlinePassed = false
    const timer = req.timeoutSec > 0 ? setTimeout(() => {
      deadlinePassed = true
      ours.abort(new Error('the deadline passed'))
    }, req.timeoutSec * 1000 + HOST_GRACE_MS) : undefined
    const onAbort = () => ours.abort(new Error('interrupted'))
    if (req.signal?.aborted) onAbort()
    req.signal?.addEventListener('abort', onAbort)
    let exitCode: number | null
    let lost: string | undefined
    let protocol = c.protocol ?? 'unknown'
    try {
      const r = await podExec(c, pod, argv, {stdin, framed, onStdout: sink('stdout'), onStderr: sink('stderr'), signal: ours.signal})
      ;({exitCode, lost, protocol} = r)
    } catch (err) {
      // After our own abort, whatever the server says about the closed exec is not the command's end.
      if (!ours.signal.aborted) throw err
      exitCode = null
    } finally {
      clearTimeout(timer)
      req.signal?.removeEventListener('abort', onAbort)
    }
    let timedOut = false
    if (ours.signal.aborted) {
      // Closing the exec does not end the command on a real cluster: kill its tree by its tag.
      await podExec(c, pod, killArgv(tag), {onStdout: () => undefined, onStderr: () => undefined}).catch((e) => logger().warn(`${vm.id}: killing the command: ${errorMessage(e)}`))
      timedOut = deadlinePassed
      exitCode = deadlinePassed ? ExitCode.Timeout : ExitCode.Interrupted
    } else if (exitCode === null) {
      // The command may still be waiting for its stdin's end: it must not be left running.
      await podExec(c, pod, killArgv(tag), {onStdout: () => undefined, onStderr: () => undefined}).catch((e) => logger().warn(`${vm.id}: killing the command: ${errorMessage(e)}`))
      throw unavailable(`the exec in pod ${pod} ended without an exit status (${lost}, protocol ${protocol}); the command was killed`, /v4/.test(String(lost)) ? 'the API server changed its exec protocols while agent ran; run it again' : undefined)
    } else if (req.timeoutSec > 0) {
      // 124: the guest's timeout (agent-init or coreutils) ended it; 137: coreutils had to KILL after TERM.
      timedOut = exitCode === 124 || (exitCode === 137 && Date.now() - started >= req.timeoutSec * 1000)
    }
    if (req.outputs) await files.fetchDir(c, pod, '/out', ctx.paths.outDir(vm.id))
    return {
      exitCode,
      timedOut,
      // No cgroup counter is read on a cluster; an out-of-memory kill shows as exit 137.
      oom: false,
      stdout: out.text(),
      stderr: err.text(),
      stdoutTruncated: out.truncated,
      stderrTruncated: err.truncated,
      durationMs: Date.now() - started,
    }
  }

  async usage(vm: VmRecord, ctx: LaunchContext): Promise<VmUsage> {
    const why = 'the kubernetes launcher reads no metrics (it does not use metrics-server)'
    const unknown: Record<string, string> = {memoryBytes: why, memoryPeakBytes: why, cpuSeconds: why, pids: why, diskUsedBytes: why}
    const u: VmUsage = {memoryLimitBytes: vm.memoryMib * 1024 * 1024, diskTotalBytes: vm.diskMib * 1024 * 1024, unknown}
    try {
      const ops = await import('./ops.js')
      const {call} = await import('./client.js')
      const {c} = ops.targetFor(ctx.paths, vm.id)
      const pod = await call(c, `read pod ${podName(vm.id)}`, () => c.core.readNamespacedPod({name: podName(vm.id), namespace: c.namespace}))
      const t = pod.status?.startTime
      if (t) u.startedAt = new Date(t).toISOString()
    } catch (err) {
      unknown.startedAt = errorMessage(err)
    }
    return u
  }

  async stoppedFiles(vm: VmRecord): Promise<GuestMount[]> {
    throw unavailable(`VM ${vm.id} runs on kubernetes: a stopped VM has no pod, and its files are not on this host`, `start it (\`agent vm start ${vm.id}\`) and copy then`)
  }

  async snapshot(vm: VmRecord): Promise<SnapshotResult> {
    throw unavailable(`VM ${vm.id} runs on kubernetes, which cannot snapshot a pod to a local image`, 'snapshot a VM of a local launcher (gvisor, runc)')
  }
}
