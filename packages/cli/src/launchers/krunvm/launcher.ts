/**
 * krunvm launcher: each VM is a krunvm microVM (libkrun, KVM on Linux, Hypervisor.framework on macOS).
 *
 * krunvm has no long-running VM: `krunvm start NAME CMD` boots the VM, runs one command and exits with
 * its code. So `create` only defines the VM (`krunvm create`), every `exec` is one `krunvm start`,
 * `stop` only kills an in-flight command, and "running" means "defined and not stopped by agent".
 *
 * Environment:
 *   AGENT_KRUNVM=<path>                  the krunvm binary (default: `krunvm` on PATH)
 *   AGENT_ENABLE_GUEST_VOLUMES=1|0|true|false
 *                                        mount /in, /out, /persist (default: on, except on macOS)
 *   AGENT_KRUNVM_ASSUME_HYPERVISOR=1     TEST-ONLY: skip the /dev/kvm / macOS check in available()
 *                                        and checks(), so contract tests can drive the krunvm stand-in
 */
import {existsSync, lstatSync, mkdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import type {StatePaths} from '../../config/state-dir.js'
import {AgentError, unavailable, usageError} from '../../errors.js'
import {imageStore} from '../../images/storage.js'
import type {VmRecord} from '../../state/vm-record.js'
import {missingBinary, tryRun} from '../../system/index.js'
import type {
  Availability, ExecRequest, ExecResult, GuestMount, HostCheck, HostProbe, LaunchContext, Launcher, LauncherCapabilities, LauncherRefs, RuntimeState, SnapshotResult, Unsupported, VmUsage,
} from '../launcher.js'
import {createArgv, krunvmName, startArgv} from './argv.js'
import {krunvmFailure, looksLikeKrunvmFailure} from './failure.js'
import {GUEST_IN, GUEST_OUT, GUEST_PERSIST, VOLUMES_HINT, guestScript, guestVolumeReference, inlineGuestArgv} from './guest-script.js'
import {INSTALL_FIX, krunvmAvailability, krunvmBinary, krunvmChecks} from './host.js'
import {acquireLock, killInFlight, lockFile, recordKrunvm, releaseLock} from './lock.js'
import {runKrunvmStart} from './run-start.js'
import {type KrunvmVm, krunvmTomlFiles, readDefinedVms} from './state-file.js'

/** krunvm's TSI networking cannot be switched off: a VM without network is refused, never faked. */
export const NO_EGRESS_FILTER: Unsupported = {
  why: "krunvm cannot filter a VM's egress: libkrun's TSI opens the guest's sockets on the host itself, so private and host addresses stay reachable and allow lists cannot be enforced",
  hint: 'use `--launcher gvisor` (or runc) for --network allow:LIST, --allow-host, or an allow_all limited to the public internet',
}

export const NO_NETWORK_NONE: Unsupported = {
  why: "krunvm cannot run a VM without network: libkrun gives the guest the host's sockets (TSI) and krunvm has no switch to turn that off",
  hint: 'use `--network allow_all` with krunvm, or `--launcher gvisor` for a VM with no network',
}

export interface KrunvmLauncherOptions {
  /** Environment read for AGENT_* switches and handed to krunvm (default: process.env, read on each call). */
  env?: NodeJS.ProcessEnv
  platform?: NodeJS.Platform
  /** Time between SIGTERM and SIGKILL when a command is killed (timeout, Ctrl-C, stop). */
  killGraceMs?: number
  /** Timeout for krunvm create/delete/list (create may pull an image). */
  adminTimeoutMs?: number
}

export class KrunvmLauncher implements Launcher {
  readonly name = 'krunvm' as const
  readonly summary = 'real microVMs with their own kernel (libkrun)'
  private readonly opts: KrunvmLauncherOptions
  private readonly versions = new Map<string, string | undefined>()

  constructor(opts: KrunvmLauncherOptions = {}) {
    this.opts = opts
  }

  private get env(): NodeJS.ProcessEnv {
    return this.opts.env ?? process.env
  }

  private get platform(): NodeJS.Platform {
    return this.opts.platform ?? process.platform
  }

  private get graceMs(): number {
    return this.opts.killGraceMs ?? 5000
  }

  /** Read on each use: the guest-volume switch comes from the environment. */
  get capabilities(): LauncherCapabilities {
    return {networkNone: NO_NETWORK_NONE, egressFilter: NO_EGRESS_FILTER, files: this.files(), sweepsOrphans: false, tty: false}
  }

  private files(): true | Unsupported {
    try {
      if (this.volumesEnabled()) return true
    } catch (err) {
      return {why: (err as Error).message, hint: VOLUMES_HINT}
    }
    const why = this.env.AGENT_ENABLE_GUEST_VOLUMES?.trim()
      ? `krunvm guest volumes are off (AGENT_ENABLE_GUEST_VOLUMES=${this.env.AGENT_ENABLE_GUEST_VOLUMES.trim()})`
      : 'krunvm guest volumes are off by default on macOS'
    return {why, hint: VOLUMES_HINT}
  }

  /** Whether new VMs get /in, /out and /persist (AGENT_ENABLE_GUEST_VOLUMES; default off on macOS). */
  volumesEnabled(): boolean {
    const raw = (this.env.AGENT_ENABLE_GUEST_VOLUMES ?? '').trim().toLowerCase()
    if (raw === '') return this.platform !== 'darwin'
    if (raw === '1' || raw === 'true') return true
    if (raw === '0' || raw === 'false') return false
    throw usageError(`AGENT_ENABLE_GUEST_VOLUMES must be 1, 0, true or false (got ${JSON.stringify(this.env.AGENT_ENABLE_GUEST_VOLUMES)})`)
  }

  /** The krunvm binary: AGENT_KRUNVM, else `krunvm` on PATH. */
  binary(): string | undefined {
    return krunvmBinary(this.env)
  }

  available(): Promise<Availability> {
    return krunvmAvailability(this.env, this.platform, this.versions)
  }

  checks(host: HostProbe): Promise<HostCheck[]> {
    return krunvmChecks(host)
  }

  private requireBinary(): string {
    const bin = this.binary()
    if (!bin) throw missingBinary('krunvm', INSTALL_FIX)
    return bin
  }

  /** The environment of every krunvm call: its TOML under our state dir, buildah sharing agent's image storage. */
  private krunvmEnv(paths: StatePaths): Record<string, string | undefined> {
    const store = imageStore(paths.root, this.env, this.platform)
    // krunvm's buildah would fail on it later, half-way through a create.
    if (store.problem) throw unavailable(store.problem.reason, store.problem.fix)
    mkdirSync(paths.krunvmConfigHome, {recursive: true, mode: 0o700})
    return {...this.env, XDG_CONFIG_HOME: paths.krunvmConfigHome, ...store.env}
  }

  private tomlFiles(paths: StatePaths): string[] {
    return krunvmTomlFiles(paths.krunvmConfigHome, this.platform, this.env)
  }

  /** The VMs krunvm knows, read from its TOML (no krunvm call, no KVM needed). */
  definedVms(paths: StatePaths): Map<string, KrunvmVm> {
    return readDefinedVms(this.tomlFiles(paths))
  }

  /** Runs an administrative krunvm command (create, delete), throwing an AgentError on failure. */
  private async admin(paths: StatePaths, args: string[], what: string): Promise<void> {
    const bin = this.requireBinary()
    const res = await tryRun(bin, args, {env: this.krunvmEnv(paths), extendEnv: false, timeoutMs: this.opts.adminTimeoutMs ?? 15 * 60_000})
    if (res.exitCode === 0 && !res.timedOut) return
    if (res.timedOut) throw unavailable(`${what} timed out (krunvm ${args[0]})`)
    if (res.missing) throw missingBinary(bin, INSTALL_FIX)
    throw krunvmFailure(what, res.exitCode, res.stdout, res.stderr)
  }

  async create(vm: VmRecord, ctx: LaunchContext): Promise<LauncherRefs> {
    // Refused before anything is touched (services check the capability first; this is defence in depth).
    if (vm.network === 'none') throw usageError(NO_NETWORK_NONE.why, NO_NETWORK_NONE.hint)
    const volumes = this.volumesEnabled()
    const {paths} = ctx
    const name = krunvmName(vm.id)
    ctx.step?.('preparing krunvm directories')
    mkdirSync(paths.krunvmConfigHome, {recursive: true, mode: 0o700})
    mkdirSync(paths.vmDir(vm.id), {recursive: true, mode: 0o700})
    const mounts: Array<[string, string]> = []
    if (volumes) {
      // krunvm refuses a --volume whose host dir does not exist yet.
      mounts.push([paths.inDir(vm.id), GUEST_IN], [paths.outDir(vm.id), GUEST_OUT])
      if (vm.persist) mounts.push([ctx.persistDir ?? paths.persistDir(vm.id), GUEST_PERSIST])
      for (const [host] of mounts) mkdirSync(host, {recursive: true, mode: 0o700})
      this.agentDir(paths, vm.id)
    }
    const argv = createArgv({image: vm.image, name, cpus: vm.cpus, memMib: vm.memoryMib, volumes: mounts})
    if (this.definedVms(paths).has(name)) {
      // A half-made VM from an earlier attempt with the same id: make it again from scratch.
      ctx.step?.('deleting a stale krunvm VM')
      await this.admin(paths, ['delete', name], `deleting stale krunvm VM ${name}`)
    }
    ctx.step?.('creating the krunvm VM')
    await this.admin(paths, argv, `krunvm create ${name}`)
    rmSync(this.stoppedMarker(paths, vm.id), {force: true})
    return {containerRef: name, rootfsRef: null, bundleRef: null}
  }

  async start(vm: VmRecord, ctx: LaunchContext): Promise<void> {
    const name = krunvmName(vm.id)
    const def = this.definedVms(ctx.paths).get(name)
    if (!def) {
      throw new AgentError('not_found', `krunvm has no VM ${name} (its definition is gone from ${this.tomlFiles(ctx.paths)[0]})`, {
        hint: `clean it with \`agent vm clean ${vm.id}\``,
      })
    }
    // Volume dirs must exist when krunvm boots the VM.
    for (const host of Object.keys(def.mappedVolumes)) mkdirSync(host, {recursive: true, mode: 0o700})
    rmSync(this.stoppedMarker(ctx.paths, vm.id), {force: true})
  }

  async stop(vm: VmRecord, ctx: LaunchContext): Promise<void> {
    await killInFlight(ctx.paths.vmDir(vm.id), this.graceMs)
    mkdirSync(ctx.paths.vmDir(vm.id), {recursive: true, mode: 0o700})
    writeFileSync(this.stoppedMarker(ctx.paths, vm.id), `${new Date().toISOString()}\n`)
  }

  async remove(vm: VmRecord, ctx: LaunchContext): Promise<void> {
    const {paths} = ctx
    const vmDir = paths.vmDir(vm.id)
    await killInFlight(vmDir, this.graceMs)
    const name = krunvmName(vm.id)
    if (this.definedVms(paths).has(name)) {
      try {
        await this.admin(paths, ['delete', name], `krunvm delete ${name}`)
      } catch (err) {
        if (!(err instanceof AgentError && err.kind === 'not_found')) throw err
      }
    }
    rmSync(lockFile(vmDir), {force: true})
    rmSync(this.stoppedMarker(paths, vm.id), {force: true})
    rmSync(join(vmDir, 'krunvm.seq'), {force: true})
    rmSync(join(paths.inDir(vm.id), '.agent'), {recursive: true, force: true})
  }

  async status(vms: readonly VmRecord[], ctx: Pick<LaunchContext, 'paths'>): Promise<Map<string, RuntimeState>> {
    const defined = this.definedVms(ctx.paths)
    const out = new Map<string, RuntimeState>()
    for (const vm of vms) {
      if (!defined.has(krunvmName(vm.id))) out.set(vm.id, 'missing')
      else if (existsSync(this.stoppedMarker(ctx.paths, vm.id))) out.set(vm.id, 'stopped')
      else out.set(vm.id, 'running')
    }
    return out
  }

  async exec(vm: VmRecord, ctx: LaunchContext, req: ExecRequest): Promise<ExecResult> {
    const {paths} = ctx
    const vmDir = paths.vmDir(vm.id)
    const name = krunvmName(vm.id)
    const bin = this.requireBinary()
    if (req.argv.length === 0) throw usageError('nothing to run')
    const def = this.definedVms(paths).get(name)
    if (!def) throw new AgentError('not_found', `krunvm has no VM ${name}`, {hint: `clean it with \`agent vm clean ${vm.id}\``})
    const inHost = Object.entries(def.mappedVolumes).find(([, g]) => g === GUEST_IN)?.[0]
    const env = {...ctx.env, ...req.env}

    if (inHost === undefined) {
      const ref = guestVolumeReference(req.argv, req.workdir)
      if (ref !== undefined) {
        throw new AgentError('unavailable', `VM ${vm.id} (krunvm) has no guest volumes, so /in, /out and /persist do not exist in it (referenced by ${JSON.stringify(ref.slice(0, 80))})`, {
          hint: VOLUMES_HINT,
        })
      }
    }

    const lock = acquireLock(vmDir, vm.id)
    let scriptHost: string | undefined
    let markerHost: string | undefined
    try {
      let guestArgv: string[]
      if (inHost !== undefined) {
        // Code reaches the guest as a file in /in; the kernel command line only holds its path.
        const n = this.nextSeq(paths, vm.id)
        const dir = this.agentDir(paths, vm.id, inHost)
        scriptHost = join(dir, `cmd-${n}.sh`)
        markerHost = join(dir, `cmd-${n}.started`)
        const script = guestScript({argv: req.argv, env, workdir: req.workdir, marker: `${GUEST_IN}/.agent/cmd-${n}.started`})
        rmSync(scriptHost, {force: true})
        rmSync(markerHost, {force: true})
        writeFileSync(scriptHost, script, {flag: 'wx', mode: 0o644})
        guestArgv = ['/bin/sh', `${GUEST_IN}/.agent/cmd-${n}.sh`]
      } else {
        guestArgv = inlineGuestArgv({argv: req.argv, env, workdir: req.workdir})
      }
      const run = await runKrunvmStart({
        bin,
        args: startArgv(name, guestArgv),
        env: this.krunvmEnv(paths),
        req,
        graceMs: this.graceMs,
        onStarted: (pid, group) => recordKrunvm(vmDir, lock, pid, group),
      })
      if (run.ended) return run.result
      const code = run.result.exitCode
      const failed = () => krunvmFailure(`krunvm start ${name}`, code, run.stdoutTail, run.stderrTail, vm.id)
      if (markerHost !== undefined) {
        // With volumes the guest script leaves a marker first: no marker means the guest never ran.
        // (Exit 0 without a marker is passed on: libkrun < 1.12 always exits 0, and a guest may delete /in.)
        if (!isRegularFile(markerHost) && code !== 0 && !run.signal) throw failed()
      } else if (looksLikeKrunvmFailure(code, run.stdoutTail, run.stderrTail)) {
        throw failed()
      }
      return run.result
    } finally {
      if (scriptHost) rmSync(scriptHost, {force: true})
      if (markerHost) rmSync(markerHost, {force: true})
      releaseLock(vmDir, lock.token)
    }
  }

  // ---------------------------------------------------------------- inspect, files, snapshot

  /** No resident VM: each command boots its own microVM, so there are no counters between commands. */
  async usage(): Promise<VmUsage> {
    const why = 'krunvm keeps no VM running between commands (each command boots its own microVM), so there is nothing to measure'
    return {unknown: Object.fromEntries(['memoryBytes', 'cpuSeconds', 'pids', 'diskUsedBytes', 'startedAt'].map((k) => [k, why]))}
  }

  async stoppedFiles(vm: VmRecord): Promise<GuestMount[]> {
    throw unavailable(`VM ${vm.id} (krunvm) keeps its root filesystem inside krunvm, which agent does not open from the host`, `start it (\`agent vm start ${vm.id}\`) and copy while it runs`)
  }

  async snapshot(vm: VmRecord): Promise<SnapshotResult> {
    throw unavailable(`VM ${vm.id} (krunvm): krunvm cannot commit a VM's filesystem to an image`, 'create the VM with --launcher gvisor or runc to snapshot it')
  }

  // ---------------------------------------------------------------- host-side files

  private stoppedMarker(paths: StatePaths, id: string): string {
    return join(paths.vmDir(id), 'krunvm.stopped')
  }

  /**
   * `<in>/.agent`, made safe: the guest can write /in, so a symlink planted there is removed rather
   * than followed (no guest code runs while agent writes here: only one krunvm start runs at a time).
   */
  private agentDir(paths: StatePaths, id: string, inHost = paths.inDir(id)): string {
    mkdirSync(inHost, {recursive: true, mode: 0o700})
    const dir = join(inHost, '.agent')
    try {
      const st = lstatSync(dir)
      if (!st.isDirectory() || st.isSymbolicLink()) rmSync(dir, {recursive: true, force: true})
    } catch {
      // absent
    }
    mkdirSync(dir, {recursive: true, mode: 0o755})
    if (lstatSync(dir).isSymbolicLink()) throw new AgentError('internal', `${dir} is a symlink`)
    return dir
  }

  /** Per-VM command counter (host-only, under the VM dir; callers hold the lock). */
  private nextSeq(paths: StatePaths, id: string): number {
    const f = join(paths.vmDir(id), 'krunvm.seq')
    let n = 0
    try {
      n = Number.parseInt(readFileSync(f, 'utf8'), 10) || 0
    } catch {
      // first command
    }
    n += 1
    writeFileSync(f, `${n}\n`)
    return n
  }
}

function isRegularFile(p: string): boolean {
  try {
    return lstatSync(p).isFile()
  } catch {
    return false
  }
}
