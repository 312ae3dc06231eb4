/**
 * The OCI launcher shared by gVisor (runsc) and runc: same bundle, same disk, same network,
 * same guest init; the flavours differ only in binary, global flags and host cgroup sizing.
 *
 * Everything a VM owns is derived from its id, so remove() works from the row alone:
 *   buildah container + runtime container  agent-<id>
 *   files, disk, overlay, netns, slirp.pid <vmDir> (see disk.ts, network.ts)
 *   cgroups                                /sys/fs/cgroup/<controller>/agent/<id>
 *   runtime state                          paths.runtimeRoot(<launcher>)/agent-<id>
 */
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import {closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {constants as osConstants} from 'node:os'
import {StatePaths} from '../config/state-dir.js'
import {AgentError, errorMessage, ExitCode, unavailable} from '../errors.js'
import {Buildah} from '../images/buildah.js'
import {imageStore} from '../images/storage.js'
import {logger} from '../logging/logger.js'
import type {LauncherName, VmRecord} from '../state/vm-record.js'
import {diskLayout, ensureDisk, fdOption, ensureRootfs, mountsUnder, releaseDisk} from './disk.js'
import type {Availability, ExecRequest, ExecResult, LaunchContext, Launcher, LauncherRefs, RuntimeState} from './launcher.js'
import {ensureNetns, ensureSlirp, releaseNetns, stopSlirp, writeGuestNetworkFiles} from './network.js'
import {buildOciSpec, cgroupsPath, DEFAULT_PATH, INIT_PATH, type OciFlavour} from './oci-spec.js'
import {CappedOutput} from './capped-output.js'

/** What differs between runsc and runc. */
export interface OciRuntime {
  name: Extract<LauncherName, 'gvisor' | 'runc'>
  bin: string
  spec: OciFlavour
  /** Flags before the subcommand; `vm` is given for `run` (network mode matters there). */
  globalArgs(root: string, vm?: VmRecord): string[]
  /** Host cgroup limits for the sandbox, from the VM's guest limits. */
  hostMemoryMib(vm: VmRecord): number
  hostPids(vm: VmRecord): number
  /** Install hint. */
  fix: string
  /** Extra host requirement; returns why it is not met. */
  hostCheck?(): string | undefined
}

export const DEFAULT_MAX_CAPTURE = 1024 * 1024
/** Host-side grace beyond the guest's own timeout before we kill the runtime exec process. */
const HOST_GRACE_MS = 5_000
const CGROUP_ROOT = '/sys/fs/cgroup'

export const containerName = (id: string) => `agent-${id}`

export class OciLauncher implements Launcher {
  readonly supportsFiles = true
  constructor(readonly runtime: OciRuntime) {}

  get name(): LauncherName {
    return this.runtime.name
  }

  // ---------------------------------------------------------------- availability

  async available(): Promise<Availability> {
    const rt = this.runtime
    const res = await execa(rt.bin, ['--version'], {reject: false, stdin: 'ignore', timeout: 10_000})
    if (res.failed && (res as {code?: string}).code === 'ENOENT') return {ok: false, reason: `${rt.bin} is not installed`, fix: rt.fix}
    if (res.exitCode !== 0) return {ok: false, reason: `${rt.bin} --version failed: ${String(res.stderr || res.message).trim().split('\n')[0]}`, fix: rt.fix}
    const version = String(res.stdout).split('\n')[0]!.trim()
    if (process.getuid?.() !== 0) return {ok: false, version, reason: `${rt.name} needs root (loop and overlay mounts, cgroups)`, fix: 'run agent as root'}
    const why = rt.hostCheck?.()
    if (why) return {ok: false, version, reason: why, fix: rt.fix}
    return {ok: true, version}
  }

  // ---------------------------------------------------------------- lifecycle

  async create(vm: VmRecord, ctx: LaunchContext): Promise<LauncherRefs> {
    const rootfs = await this.prepare(vm, ctx, true)
    await this.boot(vm, ctx)
    return {containerRef: containerName(vm.id), rootfsRef: rootfs, bundleRef: ctx.paths.bundleDir(vm.id)}
  }

  async start(vm: VmRecord, ctx: LaunchContext): Promise<void> {
    await this.prepare(vm, ctx)
    await this.boot(vm, ctx)
  }

  async stop(vm: VmRecord, ctx: LaunchContext): Promise<void> {
    ctx.step?.('stop sandbox')
    await this.killContainer(vm, ctx.paths)
    ctx.step?.('stop network')
    const vmDir = ctx.paths.vmDir(vm.id)
    await stopSlirp(vmDir)
    await releaseNetns(vmDir)
    // Disk and overlay stay mounted so /out stays readable; start() re-mounts them after a reboot.
  }

  async remove(vm: VmRecord, ctx: LaunchContext): Promise<void> {
    const vmDir = ctx.paths.vmDir(vm.id)
    await this.stop(vm, ctx)
    ctx.step?.('unmount root filesystem')
    await releaseDisk(vmDir)
    ctx.step?.('remove working container')
    const buildah = this.buildah(ctx.paths)
    await buildah.umount(containerName(vm.id))
    await buildah.rm(containerName(vm.id))
    ctx.step?.('remove files')
    const left = mountsUnder(vmDir)
    if (left.length) throw new AgentError('internal', `cannot remove ${vmDir}: still mounted: ${left.join(', ')}`, {hint: `umount ${left.join(' ')}`})
    rmSync(vmDir, {recursive: true, force: true})
  }

  /** Every idempotent host-side step before boot; returns the rootfs path. */
  private async prepare(vm: VmRecord, ctx: LaunchContext, fresh = false): Promise<string> {
    const {paths} = ctx
    const vmDir = paths.vmDir(vm.id)
    const name = containerName(vm.id)
    mkdirSync(vmDir, {recursive: true, mode: 0o700})

    ctx.step?.('working container')
    const buildah = this.buildah(paths)
    // A new id cannot have a working container yet; a restart reuses the one it has.
    if (fresh || !(await buildah.containerExists(name))) await buildah.from(vm.image, name)
    const lower = await buildah.mount(name)

    ctx.step?.('disk')
    const d = await ensureDisk(vmDir, vm.diskMib)

    ctx.step?.('root filesystem')
    await ensureRootfs(d, lower)
    for (const dir of ['in', 'out', 'tmp', '.agent', ...(ctx.persistDir ? ['persist'] : [])]) {
      mkdirSync(join(d.rootfs, dir), {recursive: true})
    }
    mkdirSync(paths.inDir(vm.id), {recursive: true, mode: 0o700})
    if (ctx.persistDir) mkdirSync(ctx.persistDir, {recursive: true, mode: 0o700})
    if (!existsSync(join(ctx.guestDir, 'agent-init'))) {
      throw new AgentError('internal', `guest init missing: ${join(ctx.guestDir, 'agent-init')}`, {hint: 'build it with: bash guest/build.sh'})
    }

    ctx.step?.('network')
    let netns: string | undefined
    if (vm.network === 'allow_all') {
      netns = await ensureNetns(vmDir)
      await ensureSlirp(vmDir)
    }
    writeGuestNetworkFiles(d.rootfs, vm.id, vm.network)

    ctx.step?.('bundle')
    const spec = buildOciSpec({
      flavour: this.runtime.spec,
      id: vm.id,
      rootfs: d.rootfs,
      guestDir: ctx.guestDir,
      inDir: paths.inDir(vm.id),
      outDir: d.out,
      tmpDir: d.tmp,
      persistDir: ctx.persistDir,
      cpus: vm.cpus,
      memoryMib: this.runtime.hostMemoryMib(vm),
      pids: this.runtime.hostPids(vm),
      netnsPath: netns,
      env: ctx.env,
      nofile: nofileHardLimit(),
    })
    mkdirSync(paths.bundleDir(vm.id), {recursive: true, mode: 0o700})
    writeFileSync(join(paths.bundleDir(vm.id), 'config.json'), JSON.stringify(spec, null, 2) + '\n')
    return d.rootfs
  }

  private async boot(vm: VmRecord, ctx: LaunchContext): Promise<void> {
    ctx.step?.('boot')
    const {paths} = ctx
    const root = this.root(paths)
    const name = containerName(vm.id)
    const state = await this.containerState(paths, name)
    if (state === 'running') return
    if (state !== undefined) await this.rt(root, ['delete', '--force', name])
    // A leftover cgroup (crashed sandbox) would keep its old limits: runsc reuses it as is.
    removeCgroups(vm.id)
    // The sandbox inherits our stdio: never give it pipes (they would never close), log to a file.
    const logPath = join(paths.vmDir(vm.id), 'runtime.log')
    // A real file descriptor, not execa's {file} (that is a pipe execa drains, and the sandbox
    // would hold it open forever).
    const log = openSync(logPath, 'w', 0o600)
    let res
    try {
      res = await execa(this.runtime.bin, [...this.runtime.globalArgs(root, vm), 'run', '--detach', '--bundle', paths.bundleDir(vm.id), name], {
        reject: false,
        stdin: 'ignore',
        stdout: fdOption(log),
        stderr: fdOption(log),
        timeout: 60_000,
      })
    } finally {
      closeSync(log)
    }
    if (res.exitCode !== 0) {
      const tail = readTail(logPath)
      await this.rt(root, ['delete', '--force', name])
      throw new AgentError('internal', `${this.runtime.bin} could not start ${name}: ${tail || res.message}`)
    }
  }

  /** SIGTERM to init (it exits cleanly), SIGKILL after a short grace, then delete. */
  private async killContainer(vm: VmRecord, paths: StatePaths): Promise<void> {
    const root = this.root(paths)
    const name = containerName(vm.id)
    let state = await this.containerState(paths, name)
    if (state === 'running') {
      await this.rt(root, ['kill', name, 'TERM'])
      for (let i = 0; i < 20 && state === 'running'; i++) {
        await sleep(100)
        state = await this.containerState(paths, name)
      }
      if (state === 'running') await this.rt(root, ['kill', name, 'KILL'])
    }
    if (state !== undefined) await this.rt(root, ['delete', '--force', name])
    removeCgroups(vm.id)
  }

  // ---------------------------------------------------------------- status

  async status(vms: readonly VmRecord[], ctx: Pick<LaunchContext, 'paths'>): Promise<Map<string, RuntimeState>> {
    const out = new Map<string, RuntimeState>()
    if (!vms.length) return out
    const running = new Set<string>()
    const root = this.root(ctx.paths)
    const res = await execa(this.runtime.bin, [...this.runtime.globalArgs(root), 'list', '--format', 'json'], {reject: false, stdin: 'ignore', timeout: 30_000})
    if (res.exitCode === 0) {
      const rows = (JSON.parse(String(res.stdout || 'null')) ?? []) as Array<{id: string; status: string}>
      for (const r of rows) if (r.status === 'running') running.add(r.id)
    } else if (existsSync(root)) {
      // An unanswered list is not "nothing runs": the caller must keep the rows as they are.
      throw unavailable(`cannot ask ${this.runtime.bin} which VMs run: ${String(res.stderr || res.shortMessage || '').trim().split('\n').pop()}`, this.runtime.fix)
    }
    for (const vm of vms) {
      if (running.has(containerName(vm.id))) out.set(vm.id, 'running')
      else if (existsSync(diskLayout(ctx.paths.vmDir(vm.id)).image)) out.set(vm.id, 'stopped')
      else out.set(vm.id, 'missing')
    }
    return out
  }

  // ---------------------------------------------------------------- exec

  async exec(vm: VmRecord, ctx: LaunchContext, req: ExecRequest): Promise<ExecResult> {
    const started = Date.now()
    const root = this.root(ctx.paths)
    const name = containerName(vm.id)
    const tag = randomBytes(6).toString('hex')
    const timeoutSec = Math.max(1, Math.ceil(req.timeoutSec))
    const env: Record<string, string> = {PATH: DEFAULT_PATH, HOME: '/root', HOSTNAME: vm.id, ...ctx.env, ...req.env}
    const args = [...this.runtime.globalArgs(root), 'exec']
    if (req.workdir) args.push('--cwd', req.workdir)
    for (const [k, v] of Object.entries(env)) args.push('--env', `${k}=${v}`)
    args.push(name, INIT_PATH, 'exec', '--timeout', String(timeoutSec), '--tag', tag, '--', ...req.argv)

    const oomBefore = oomKills(vm.id)
    const max = req.maxCaptureBytes ?? DEFAULT_MAX_CAPTURE
    const capture = req.output === 'capture'
    logger().debug(`${this.runtime.bin} exec ${name} ${req.argv.join(' ')}`)
    const proc = execa(this.runtime.bin, args, {
      reject: false,
      buffer: false,
      stdin: req.stdin === 'inherit' ? 'inherit' : req.stdin ? 'pipe' : 'ignore',
      // Always through us: runsc writes a donated regular-file fd at its own offset, so
      // `agent vm exec ... > log 2>&1` would interleave stdout over stderr.
      stdout: 'pipe',
      stderr: 'pipe',
    })
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
          void this.rt(root, ['exec', name, INIT_PATH, 'kill', '--tag', tag])
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
    if (hostKilled) await this.rt(root, ['exec', name, INIT_PATH, 'kill', '--tag', tag])
    if ((res as {code?: string}).code === 'ENOENT') throw unavailable(`${this.runtime.bin} is not installed`, this.runtime.fix)

    let exitCode = res.exitCode ?? (res.signal ? 128 + (osConstants.signals[res.signal as keyof typeof osConstants.signals] ?? 0) : 1)
    const elapsed = Date.now() - started
    const timedOut = hostKilled === 'deadline' || (exitCode === ExitCode.Timeout && elapsed >= timeoutSec * 1000 - 250)
    if (timedOut) exitCode = ExitCode.Timeout
    else if (hostKilled === 'abort') exitCode = ExitCode.Interrupted

    // OOM: the host memory cgroup's oom_kill counter (cgroup v1 memory.oom_control).
    // runc: the kernel killed a guest process; it is ours when the command died of SIGKILL.
    // runsc: gVisor has no guest OOM killer here; the host kills the sentry, i.e. the whole
    // sandbox dies (runsc exec then fails with "WaitPID ... EOF"). start() brings it back.
    let oom = false
    if (!timedOut && oomKills(vm.id) > oomBefore) {
      if (this.runtime.spec === 'runsc' || exitCode === ExitCode.OutOfMemory) {
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

  // ---------------------------------------------------------------- helpers

  private root(paths: StatePaths): string {
    const root = paths.runtimeRoot(this.runtime.name)
    mkdirSync(root, {recursive: true, mode: 0o700})
    return root
  }

  private buildah(paths: StatePaths): Buildah {
    return new Buildah(imageStore(paths.root))
  }

  /** Runs a runtime subcommand, tolerating failure (cleanup paths); returns the result. */
  private async rt(root: string, args: readonly string[]) {
    const res = await execa(this.runtime.bin, [...this.runtime.globalArgs(root), ...args], {reject: false, stdin: 'ignore', all: true, timeout: 30_000})
    if (res.exitCode !== 0) logger().debug(`${this.runtime.bin} ${args.join(' ')}: ${String(res.all).trim()}`)
    return res
  }

  /** 'running' | 'stopped' | 'created' ... or undefined when the runtime does not know it. */
  private async containerState(paths: StatePaths, name: string): Promise<string | undefined> {
    const res = await execa(this.runtime.bin, [...this.runtime.globalArgs(this.root(paths)), 'state', name], {reject: false, stdin: 'ignore', timeout: 30_000})
    if (res.exitCode !== 0) return undefined
    try {
      return (JSON.parse(String(res.stdout)) as {status?: string}).status ?? 'unknown'
    } catch (err) {
      logger().debug(`state ${name}: ${errorMessage(err)}`)
      return 'unknown'
    }
  }
}

/** memory.oom_control's oom_kill counter of the VM's cgroup (0 when absent). */
export function oomKills(id: string): number {
  try {
    const text = readFileSync(join(CGROUP_ROOT, 'memory', cgroupsPath(id), 'memory.oom_control'), 'utf8')
    return Number(/^oom_kill (\d+)/m.exec(text)?.[1] ?? 0)
  } catch {
    return 0
  }
}

/** Removes /sys/fs/cgroup/<each controller>/agent/<id>; empty cgroups only, errors ignored. */
export function removeCgroups(id: string): void {
  let controllers: string[]
  try {
    controllers = readdirSync(CGROUP_ROOT)
  } catch {
    return
  }
  for (const c of controllers) {
    const dir = join(CGROUP_ROOT, c, cgroupsPath(id))
    if (!existsSync(dir)) continue
    try {
      rmdirSync(dir)
    } catch (err) {
      logger().debug(`rmdir ${dir}: ${errorMessage(err)}`)
    }
  }
}

/** Our own RLIMIT_NOFILE hard limit: the guest cannot get more without CAP_SYS_RESOURCE. */
function nofileHardLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'))
    const hard = line?.trim().split(/\s+/)[4]
    if (hard === 'unlimited') return 65536
    const n = Number(hard)
    if (Number.isFinite(n) && n > 0) return Math.min(n, 65536)
  } catch {
    // not Linux?
  }
  return 1024
}

function readTail(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim().split('\n').filter(Boolean).slice(-3).join(' | ')
  } catch {
    return ''
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
