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
import {closeSync, existsSync, mkdirSync, openSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {StatePaths} from '../config/state-dir.js'
import {AgentError, errorMessage, unavailable} from '../errors.js'
import {Buildah} from '../images/buildah.js'
import {imageStore} from '../images/storage.js'
import {logger} from '../logging/logger.js'
import type {LauncherName, VmRecord} from '../state/vm-record.js'
import {lastLines, lastLinesOfFile, run, sleep, tryRun} from '../system/index.js'
import {diskLayout, ensureDisk, ensurePersist, ensureRootfs, isMounted, mountsUnder, releaseDisk, releasePersist} from './disk.js'
import {ociHostChecks} from './host-checks.js'
import {nofileHardLimit, removeCgroups} from './host-cgroups.js'
import type {
  Availability, ExecRequest, ExecResult, GuestMount, HostCheck, HostProbe, LaunchContext, Launcher, LauncherCapabilities, LauncherRefs, RuntimeState, SnapshotRequest, SnapshotResult, VmUsage,
} from './launcher.js'
import {ociUsage} from './oci-usage.js'
import {ensureNetns, ensureSlirp, releaseNetns, stopSlirp, writeGuestNetworkFiles} from './network.js'
import {applyEgress, stopEgress} from './egress.js'
import {guestResolver} from './egress-policy.js'
import {channelHostDir, channelSocketPath} from './guest-channel.js'
import {ociExec} from './oci-exec.js'
import {containerState, endContainer, hasRuntimeState, listContainers, listFromFiles, stateFromFiles} from './oci-state.js'
import {buildOciSpec, type OciFlavour} from './oci-spec.js'
import {probeVersion} from './version-probe.js'

/** What differs between runsc and runc. */
export interface OciRuntime {
  name: Extract<LauncherName, 'gvisor' | 'runc'>
  /** Why one would choose it (doctor's default reason). */
  summary: string
  bin: string
  /** The env var that names the binary (AGENT_RUNSC), for doctor. */
  binEnv: string
  spec: OciFlavour
  /** The host's OOM killer ends the whole sandbox, not just the guest command (gVisor). */
  oomKillsSandbox: boolean
  /** Flags before the subcommand; `vm` is given for `run` (network mode matters there). */
  globalArgs(root: string, vm?: VmRecord): string[]
  /** Host cgroup limits for the sandbox, from the VM's guest limits. */
  hostMemoryMib(vm: VmRecord): number
  hostPids(vm: VmRecord): number
  /** Install hint. */
  fix: string
  /** Extra host requirement; returns why it is not met. */
  hostCheck?(): string | undefined
  /** What this runtime's version allows, for doctor (one line, or nothing). */
  versionFacts?(version: string): string | undefined
  /** Last changes to the bundle's spec before it is written (gVisor: RLIMIT_NPROC from --pids). */
  adjustSpec?(spec: Record<string, unknown>, vm: VmRecord): void
  /** After an OOM kill, until the runtime's view is true again (gVisor: the dying sandbox still says "running"). */
  settleAfterOom?(root: string, name: string): Promise<void>
}

export const containerName = (id: string) => `agent-${id}`

export class OciLauncher implements Launcher {
  readonly capabilities: LauncherCapabilities = {networkNone: true, egressFilter: true, files: true, sweepsOrphans: true, tty: true}
  constructor(readonly runtime: OciRuntime) {}

  get name(): LauncherName {
    return this.runtime.name
  }

  get summary(): string {
    return this.runtime.summary
  }

  async checks(host: HostProbe): Promise<HostCheck[]> {
    return ociHostChecks(this.runtime, host)
  }

  // ---------------------------------------------------------------- availability

  async available(): Promise<Availability> {
    const rt = this.runtime
    // Asked once per binary (version-probe.ts), not once per command.
    const res = await probeVersion(rt.bin)
    if (res.missing) return {ok: false, reason: `${rt.bin} is not installed`, fix: rt.fix}
    if (res.exitCode !== 0) return {ok: false, reason: `${rt.bin} --version failed: ${res.line || `exit ${res.exitCode}`}`, fix: rt.fix}
    const version = res.line
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
    const {deleted} = await this.stopSandbox(vm, ctx)
    await deleted
    // Disk and overlay stay mounted so /out stays readable; start() re-mounts them after a reboot.
  }

  async remove(vm: VmRecord, ctx: LaunchContext): Promise<void> {
    const vmDir = ctx.paths.vmDir(vm.id)
    const {deleted} = await this.stopSandbox(vm, ctx)
    try {
      ctx.step?.('unmount root filesystem')
      await releaseDisk(vmDir)
      if (ctx.persistDir) await releasePersist(ctx.persistDir)
      ctx.step?.('remove working container')
      // `buildah rm` unmounts the container itself.
      await this.buildah(ctx.paths).rm(containerName(vm.id))
    } finally {
      await deleted
    }
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
    // A restart reuses its working container: mounting it is the check; made again only when gone.
    if (fresh) await buildah.from(vm.image, name)
    const lower = await buildah.mount(name).catch(async (err: unknown) => {
      if (fresh || (await buildah.containerExists(name))) throw err
      await buildah.from(vm.image, name)
      return buildah.mount(name)
    })

    ctx.step?.('disk')
    const d = await ensureDisk(vmDir, vm.diskMib)

    ctx.step?.('root filesystem')
    await ensureRootfs(d, lower)
    for (const dir of ['in', 'out', 'tmp', '.agent', ...(ctx.persistDir ? ['persist'] : [])]) {
      mkdirSync(join(d.rootfs, dir), {recursive: true})
    }
    mkdirSync(paths.inDir(vm.id), {recursive: true, mode: 0o700})
    // /persist: its own bounded file system (an image in the kept persist dir), or the plain dir of a VM made before.
    const persist = ctx.persistDir ? await ensurePersist(vmDir, ctx.persistDir, vm.persistMib) : undefined
    if (!existsSync(join(ctx.guestDir, 'agent-init'))) {
      throw new AgentError('internal', `guest init missing: ${join(ctx.guestDir, 'agent-init')}`, {hint: 'build it with: bash guest/build.sh'})
    }

    // The exec channel's dir lives on the bounded disk; a socket left by the last boot goes.
    const chan = channelHostDir(vmDir)
    mkdirSync(chan, {recursive: true, mode: 0o700})
    rmSync(channelSocketPath(vmDir), {force: true, recursive: true})

    ctx.step?.('network')
    let netns: string | undefined
    if (vm.network !== 'none') {
      netns = await ensureNetns(vmDir)
      // The rules are in place before slirp4netns gives the namespace a way out.
      await applyEgress(vmDir, netns, vm)
      await ensureSlirp(vmDir)
    }
    writeGuestNetworkFiles(d.rootfs, vm.id, vm.network === 'none' ? 'keep' : (guestResolver(vm) ?? null))

    ctx.step?.('bundle')
    const spec = buildOciSpec({
      flavour: this.runtime.spec,
      id: vm.id,
      rootfs: d.rootfs,
      guestDir: ctx.guestDir,
      inDir: paths.inDir(vm.id),
      outDir: d.out,
      tmpDir: d.tmp,
      persistDir: persist,
      cpus: vm.cpus,
      memoryMib: this.runtime.hostMemoryMib(vm),
      pids: this.runtime.hostPids(vm),
      netnsPath: netns,
      env: ctx.env,
      nofile: nofileHardLimit(),
      channelDir: chan,
    })
    this.runtime.adjustSpec?.(spec, vm)
    mkdirSync(paths.bundleDir(vm.id), {recursive: true, mode: 0o700})
    writeFileSync(join(paths.bundleDir(vm.id), 'config.json'), JSON.stringify(spec, null, 2) + '\n')
    return d.rootfs
  }

  private async boot(vm: VmRecord, ctx: LaunchContext): Promise<void> {
    ctx.step?.('boot')
    const {paths} = ctx
    const root = this.root(paths)
    const name = containerName(vm.id)
    // A fresh id, or a VM whose last stop deleted it, has no runtime state: nothing to ask.
    const state = hasRuntimeState(root, name) ? await this.containerState(paths, name) : undefined
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
      // Its own session: `runsc run --detach` leaves its gofer in the caller's process group and
      // session, and the VM must not die with the terminal, CI step or agent that created it.
      res = await tryRun(this.runtime.bin, [...this.runtime.globalArgs(root, vm), 'run', '--detach', '--bundle', paths.bundleDir(vm.id), name], {
        stdoutFd: log,
        stderrFd: log,
        timeoutMs: 60_000,
        detached: true,
      })
    } finally {
      closeSync(log)
    }
    if (res.exitCode !== 0) {
      const tail = lastLinesOfFile(logPath)
      await this.rt(root, ['delete', '--force', name])
      if (res.missing) throw unavailable(`${this.runtime.bin} is not installed`, this.runtime.fix)
      throw new AgentError('internal', `${this.runtime.bin} could not start ${name}: ${tail || `exit ${res.exitCode}`}`)
    }
    // agent-init publishes its socket once it listens; the first exec should find it. If it does
    // not appear, execs fall back to the runtime's exec (logged), so this only waits, never fails.
    const sock = channelSocketPath(paths.vmDir(vm.id))
    for (const until = Date.now() + 3_000; !existsSync(sock) && Date.now() < until; ) await sleep(10)
  }

  /**
   * Ends the sandbox (oci-state.ts), starts the runtime's delete and stops the network. Once the
   * sandbox's processes have ended nothing of the VM is in use, so the caller goes on while `runsc
   * delete` waits for the host's init to collect the dead sandbox (up to ~2 s on some hosts).
   * `deleted` settles once the runtime forgot it and its cgroups are gone.
   */
  private async stopSandbox(vm: VmRecord, ctx: LaunchContext): Promise<{deleted: Promise<void>}> {
    ctx.step?.('stop sandbox')
    const root = this.root(ctx.paths)
    const name = containerName(vm.id)
    const call = (args: readonly string[]) => this.rt(root, args)
    // The runtime's own state files say what `state` would; asked only when they cannot be read.
    const known = hasRuntimeState(root, name)
    const files = known ? stateFromFiles(root, name, vm.id) : undefined
    const state = files ?? (known ? await containerState(call, name) : undefined)
    let deleted = Promise.resolve()
    if (state === undefined) removeCgroups(vm.id)
    else {
      const ended = state.status === 'running' && (await endContainer(call, root, name, state, undefined, files?.procs))
      deleted = call(['delete', '--force', name]).then(() => removeCgroups(vm.id))
      deleted.catch(() => undefined) // awaited by the caller; handled meanwhile
      // Not seen to end (paused, created, or a kill that did not take): the delete first, as it kills.
      if (!ended) await deleted
    }
    try {
      ctx.step?.('stop network')
      const vmDir = ctx.paths.vmDir(vm.id)
      await stopEgress(vmDir)
      await stopSlirp(vmDir)
      await releaseNetns(vmDir)
    } catch (err) {
      await deleted
      throw err
    }
    return {deleted}
  }

  // ---------------------------------------------------------------- status

  async status(vms: readonly VmRecord[], ctx: Pick<LaunchContext, 'paths'>): Promise<Map<string, RuntimeState>> {
    const out = new Map<string, RuntimeState>()
    if (!vms.length) return out
    const root = this.root(ctx.paths)
    // From the runtime's own files (oci-state.ts); one `list` for all only when some cannot be read so.
    const fromFiles = listFromFiles(root, vms.map((vm) => ({id: vm.id, name: containerName(vm.id)})))
    const {rows, res} = fromFiles ? {rows: fromFiles, res: undefined} : await listContainers((args) => this.rt(root, args))
    if (!rows && res && existsSync(root)) {
      // An unanswered list is not "nothing runs": the caller must keep the rows as they are.
      throw unavailable(`cannot ask ${this.runtime.bin} which VMs run: ${lastLines(res.all, 1) || `exit ${res.exitCode}`}`, this.runtime.fix)
    }
    // A paused sandbox (held still for a snapshot) is alive.
    const running = new Set((rows ?? []).filter((r) => r.status === 'running' || r.status === 'paused').map((r) => r.id))
    for (const vm of vms) {
      if (running.has(containerName(vm.id))) out.set(vm.id, 'running')
      else if (existsSync(diskLayout(ctx.paths.vmDir(vm.id)).image)) out.set(vm.id, 'stopped')
      else out.set(vm.id, 'missing')
    }
    return out
  }

  // ---------------------------------------------------------------- inspect, files, snapshot

  async usage(vm: VmRecord, ctx: LaunchContext): Promise<VmUsage> {
    const root = this.root(ctx.paths)
    const listing = await listContainers((args) => this.rt(root, args))
    return ociUsage(vm.id, ctx.paths.vmDir(vm.id), this.runtime.bin, listing.rows?.find((r) => r.id === containerName(vm.id)), listing.res)
  }

  /** The overlay root filesystem and the guest's other mounts, as the bundle sets them up (prepare). */
  async stoppedFiles(vm: VmRecord, ctx: LaunchContext): Promise<GuestMount[]> {
    const name = containerName(vm.id)
    if ((await this.containerState(ctx.paths, name)) === 'running') throw new AgentError('conflict', `VM ${vm.id} is running: its files are reached through the guest`)
    const vmDir = ctx.paths.vmDir(vm.id)
    if (!existsSync(diskLayout(vmDir).image)) throw new AgentError('conflict', `VM ${vm.id} has no disk (${diskLayout(vmDir).image} is missing)`, {hint: `clean it with \`agent vm clean ${vm.id}\``})
    // stop() keeps disk and overlay mounted; after a host reboot they are mounted again here.
    const d = await ensureDisk(vmDir, vm.diskMib)
    if (!isMounted(d.rootfs)) {
      const buildah = this.buildah(ctx.paths)
      if (!(await buildah.containerExists(name))) throw new AgentError('conflict', `VM ${vm.id} has lost its working container ${name}`, {hint: `clean it with \`agent vm clean ${vm.id}\``})
      await ensureRootfs(d, await buildah.mount(name))
    }
    const mounts: GuestMount[] = [
      {guest: '/', host: d.rootfs, readOnly: false},
      {guest: '/out', host: d.out, readOnly: false},
      {guest: '/tmp', host: d.tmp, readOnly: false},
      {guest: '/in', host: ctx.paths.inDir(vm.id), readOnly: true},
    ]
    if (ctx.persistDir) mounts.push({guest: '/persist', host: await ensurePersist(vmDir, ctx.persistDir, vm.persistMib), readOnly: false})
    return mounts
  }

  /**
   * The VM's changes are its overlay's upper dir, which is the overlay storage driver's own layer
   * format (whiteouts as 0/0 character devices, opaque dirs by xattr). So a working container is
   * made from the VM's image, the upper dir copied into that container's (empty, fresh) layer
   * dir, and the container committed: the image's layers are shared, the VM's changes are one
   * layer on top. `cp -a` copies the guest's links as links into a directory nobody else writes,
   * so no guest path is followed on the host. A running VM is synced and paused for the copy,
   * then resumed.
   */
  async snapshot(vm: VmRecord, ctx: LaunchContext, req: SnapshotRequest): Promise<SnapshotResult> {
    const {paths} = ctx
    const root = this.root(paths)
    const name = containerName(vm.id)
    const d = diskLayout(paths.vmDir(vm.id))
    if (!isMounted(d.mount)) await this.stoppedFiles(vm, ctx)
    const buildah = this.buildah(paths)
    const work = `agent-snap-${vm.id}-${Date.now().toString(36)}`
    ctx.step?.('working container')
    await buildah.from(vm.image, work)
    let paused = false
    let wasRunning = false
    try {
      const diff = await buildah.layerDiffDir(work)
      if ((await this.containerState(paths, name)) === 'running') {
        wasRunning = true
        ctx.step?.('pause')
        // gVisor may hold written data in the sentry until sync; then nothing runs during the copy.
        await this.exec(vm, ctx, {argv: ['sync'], timeoutSec: 30, output: 'capture', maxCaptureBytes: 4096}).catch((e) => logger().debug(`${vm.id}: sync before snapshot: ${errorMessage(e)}`))
        const p = await this.rt(root, ['pause', name])
        if (p.exitCode !== 0) throw new AgentError('internal', `cannot pause ${name} for a consistent snapshot: ${lastLines(p.all, 1)}`)
        paused = true
      }
      ctx.step?.('copy changes')
      await run('cp', ['-a', '--', `${d.upper}/.`, `${diff}/`], {what: `copying ${vm.id}'s changes`, timeoutMs: 600_000})
      if (paused) {
        await this.resume(root, name)
        paused = false
      }
      ctx.step?.('commit')
      const labels = Object.entries(req.labels).flatMap(([k, v]) => ['--label', `${k}=${v}`])
      if (labels.length) await buildah.config(work, labels)
      await buildah.commit(work, req.tag)
    } catch (err) {
      await buildah.rm(work).catch(() => undefined)
      throw err
    } finally {
      if (paused) await this.resume(root, name)
    }
    const id = (await buildah.imageId(req.tag)) ?? ''
    return {image: req.tag, id, held: wasRunning ? 'paused' : 'not running'}
  }

  private async resume(root: string, name: string): Promise<void> {
    const r = await this.rt(root, ['resume', name])
    if (r.exitCode !== 0) throw new AgentError('internal', `could not resume ${name} after the snapshot: ${lastLines(r.all, 1)}`, {hint: `${this.runtime.bin} --root ${root} resume ${name}`})
  }

  // ---------------------------------------------------------------- exec

  async exec(vm: VmRecord, ctx: LaunchContext, req: ExecRequest): Promise<ExecResult> {
    const result = await ociExec(this.runtime, vm, this.root(ctx.paths), ctx, req)
    if (result.oom && this.runtime.oomKillsSandbox) await this.runtime.settleAfterOom?.(this.root(ctx.paths), containerName(vm.id))
    if (result.oom && this.runtime.oomKillsSandbox && (await this.containerState(ctx.paths, containerName(vm.id))) !== 'running') {
      result.sandboxLost = await this.reviveAfterOom(vm, ctx)
    }
    return result
  }

  /**
   * Under gVisor the host's OOM killer takes the whole sandbox, not just the command. The VM's
   * disk is intact, so boot it again: the user sees the 137 of their command and a usable VM.
   * Returns why the VM is down when it could not be booted again.
   */
  private async reviveAfterOom(vm: VmRecord, ctx: LaunchContext): Promise<string | undefined> {
    logger().warn(`${vm.id}: the out-of-memory kill took down the ${this.name} sandbox; booting it again (files are kept)`)
    try {
      await this.stop(vm, ctx)
      await this.start(vm, ctx)
      return undefined
    } catch (err) {
      logger().error(`${vm.id}: could not boot it again: ${errorMessage(err)}; run \`agent vm start ${vm.id}\``)
      return `sandbox died of out-of-memory and could not be restarted: ${errorMessage(err)}`
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
    const res = await tryRun(this.runtime.bin, [...this.runtime.globalArgs(root), ...args], {timeoutMs: 30_000})
    if (res.exitCode !== 0) logger().debug(`${this.runtime.bin} ${args.join(' ')}: ${res.all.trim()}`)
    return res
  }

  /** 'running' | 'stopped' | 'created' ... or undefined when the runtime does not know it. */
  private async containerState(paths: StatePaths, name: string): Promise<string | undefined> {
    const root = this.root(paths)
    return (await containerState((args) => this.rt(root, args), name))?.status
  }
}
