import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {AgentError, usageError} from '../errors.js'
import {logger} from '../logging/logger.js'
import type {VmRecord} from '../state/vm-record.js'
import {sleep, tryRun} from '../system/index.js'
import type {Availability, LaunchContext, LauncherRefs} from './launcher.js'
import {OciLauncher} from './oci.js'
import {probeVersion} from './version-probe.js'
import {choosePlatform, DEFAULT_GVISOR_PLATFORM, GVISOR_PLATFORM_OPTION, GVISOR_PLATFORMS, gvisorFactsLine, type GvisorFacts, type GvisorPlatform, gvisorWarning, platformProblem, runscFacts} from './gvisor-version.js'

/**
 * Sentry + gofer overhead charged to the sandbox's host cgroup on top of the guest's own memory
 * (measured ~30-40 MiB idle on runsc 20221219/ptrace); without it a 64 MiB VM would get ~25 MiB.
 */
export const GVISOR_MEMORY_OVERHEAD_MIB = 64

/** The platform a VM boots with, recorded at create so that `vm start` boots it the same way. */
export const PLATFORM_FILE = 'gvisor-platform'

/** AGENT_GVISOR_PLATFORM (the default when `vm create --gvisor-platform` is not given), checked; undefined when unset. */
export function platformFromEnv(env: NodeJS.ProcessEnv = process.env): GvisorPlatform | undefined {
  const v = env.AGENT_GVISOR_PLATFORM?.trim()
  if (!v) return undefined
  if (!(GVISOR_PLATFORMS as readonly string[]).includes(v)) throw usageError(`unknown gVisor platform "${v}" (AGENT_GVISOR_PLATFORM): choose one of ${GVISOR_PLATFORMS.join(', ')}`)
  return v as GvisorPlatform
}

/** The platform recorded for a VM; VMs made before the file existed ran ptrace. */
export function recordedPlatform(vmDir: string): GvisorPlatform {
  try {
    const v = readFileSync(join(vmDir, PLATFORM_FILE), 'utf8').trim()
    if ((GVISOR_PLATFORMS as readonly string[]).includes(v)) return v as GvisorPlatform
  } catch {
    // none recorded
  }
  return 'ptrace'
}

/**
 * gVisor (runsc; ptrace or systrap platform, neither needs KVM). What differs between runsc
 * releases (statx, lgetxattr on symlinks, platforms) is in gvisor-version.ts: agent works with
 * 20221219 and later, warns about what an old release lacks, and refuses only what cannot work
 * (a platform the release does not have). Notes, found by experiment:
 *  - --network=sandbox refused every namespace on kernels >= 6.x with 20221219 ("cannot run with
 *    network enabled in root network namespace"). allow_all therefore uses --network=host *inside*
 *    the VM's own slirp4netns namespace (the spec's network path): host-kernel sockets, but only
 *    tap0 and lo to see.
 *  - pids: the host pids cgroup counts host threads (ptrace: stub processes; systrap: stub
 *    threads), not guest processes, and runsc has no in-sandbox pids cgroup. It does enforce
 *    RLIMIT_NPROC (20221219 and 20240729 alike), and `runsc exec` processes inherit the spec's
 *    rlimits, so --pids becomes the guest's RLIMIT_NPROC (see limitGuestProcesses). The host
 *    limit, max(8192, 64 x --pids), stays as the host's safety net.
 *  - OOM: the host's OOM killer takes the sentry, i.e. the whole sandbox. Its process then lingers
 *    (exiting, then a zombie until the host's init reaps it: ~2 s here) while `runsc state` still
 *    says "running" and its control socket refuses connections. settleAfterOom() waits that out,
 *    so that the VM is booted again instead of being left half-dead ("connection refused").
 *  - --overlay2=none: guest writes go to our overlay on the bounded disk, not to sentry memory.
 */
export class GvisorLauncher extends OciLauncher {
  /** Platform per VM id for the `run` about to happen (set by create/start). */
  private readonly platforms: Map<string, GvisorPlatform>
  private factsMemo?: Promise<GvisorFacts | undefined>
  /** Known once available() or a boot asked the binary. */
  private facts?: GvisorFacts

  constructor(bin = process.env.AGENT_RUNSC ?? 'runsc') {
    const platforms = new Map<string, GvisorPlatform>()
    super({
      name: 'gvisor',
      summary: 'a user-space kernel, VM-grade isolation without KVM',
      bin,
      binEnv: 'AGENT_RUNSC',
      spec: 'runsc',
      oomKillsSandbox: true,
      globalArgs: (root: string, vm?: VmRecord) => {
        const args = ['--root', root, `--platform=${(vm && platforms.get(vm.id)) ?? 'ptrace'}`, '--overlay2=none']
        // --host-uds=create: agent-init's bind() in its channel dir makes a host socket agent connects to (docs/security.md).
        if (vm) args.push(`--network=${vm.network === 'none' ? 'none' : 'host'}`, '--host-uds=create')
        return args
      },
      hostMemoryMib: (vm) => vm.memoryMib + GVISOR_MEMORY_OVERHEAD_MIB,
      hostPids: (vm) => Math.max(8192, vm.pids * 64),
      fix: 'install runsc 0.0~20240729.0 from bookworm-backports: bash scripts/setup.sh (or apt-get install runsc)',
      versionFacts: (version) => gvisorFactsLine(version, platformFromEnvQuiet() ?? DEFAULT_GVISOR_PLATFORM),
      adjustSpec: (spec, vm) => limitGuestProcesses(spec, vm.pids),
      settleAfterOom: (root, name) => settleAfterOom(bin, root, name),
    })
    this.platforms = platforms
  }

  override async available(): Promise<Availability> {
    const a = await super.available()
    if (!a.version) return a
    const facts = runscFacts(a.version)
    this.facts = facts
    if (!facts.supported) return {ok: false, version: a.version, reason: facts.reason, fix: this.runtime.fix}
    return a
  }

  override async create(vm: VmRecord, ctx: LaunchContext): Promise<LauncherRefs> {
    const facts = await this.knownFacts()
    const asked = ctx.options?.[GVISOR_PLATFORM_OPTION.flag] as GvisorPlatform | undefined
    const platform = choosePlatform(facts, asked ?? platformFromEnv())
    const problem = facts && platformProblem(facts, platform)
    if (problem) throw new AgentError('unavailable', problem)
    const warning = facts && gvisorWarning(facts)
    if (warning) logger().warn(warning)
    const vmDir = ctx.paths.vmDir(vm.id)
    mkdirSync(vmDir, {recursive: true, mode: 0o700})
    writeFileSync(join(vmDir, PLATFORM_FILE), `${platform}\n`)
    this.platforms.set(vm.id, platform)
    return super.create(vm, ctx)
  }

  override async start(vm: VmRecord, ctx: LaunchContext): Promise<void> {
    const facts = await this.knownFacts()
    const platform = recordedPlatform(ctx.paths.vmDir(vm.id))
    const problem = facts && platformProblem(facts, platform)
    if (problem) throw new AgentError('unavailable', `${vm.id} was created with the ${platform} platform: ${problem}`)
    this.platforms.set(vm.id, platform)
    return super.start(vm, ctx)
  }

  /** The binary's facts, asking it once per process when available() has not already. */
  private knownFacts(): Promise<GvisorFacts | undefined> {
    if (this.facts) return Promise.resolve(this.facts)
    this.factsMemo ??= probeVersion(this.runtime.bin).then((r) => {
      if (r.exitCode !== 0 || r.missing) return undefined
      this.facts = runscFacts(r.line)
      return this.facts
    })
    return this.factsMemo
  }
}

/**
 * --pids per guest process under gVisor: RLIMIT_NPROC (soft = hard = --pids; the guest has no
 * CAP_SYS_RESOURCE to raise it). Like runc's pids cgroup it counts threads too. It is per user:
 * every guest command runs as root, so it holds the whole VM unless code switches to other uids
 * (each then gets --pids of its own, still under the host cap). runc must not get it: there the
 * kernel would count all of the host's root processes.
 */
export function limitGuestProcesses(spec: Record<string, unknown>, pids: number): void {
  const proc = spec.process as {rlimits?: Array<{type: string; hard: number; soft: number}>} | undefined
  if (!proc) return
  const n = Math.max(1, Math.floor(pids))
  proc.rlimits = [...(proc.rlimits ?? []).filter((r) => r.type !== 'RLIMIT_NPROC'), {type: 'RLIMIT_NPROC', hard: n, soft: n}]
}

function platformFromEnvQuiet(): GvisorPlatform | undefined {
  try {
    return platformFromEnv()
  } catch {
    return undefined
  }
}

/** The sandbox's process state from /proc ('Z' zombie, 'R', 'S', …), or undefined when gone. */
function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]
  } catch {
    return undefined
  }
}

/**
 * After a host OOM kill, waits (up to 20 s) until runsc's view of the sandbox is true: either it
 * no longer says "running", or the sandbox process is alive and not a zombie for a second in a
 * row (the kill hit something else). A sandbox that stays a zombie is force-deleted, so that the
 * caller sees it stopped and boots it again.
 */
export async function settleAfterOom(bin: string, root: string, name: string, waitMs = 20_000): Promise<void> {
  const t0 = Date.now()
  let aliveSince: number | undefined
  while (Date.now() - t0 < waitMs) {
    const res = await tryRun(bin, ['--root', root, 'state', name], {timeoutMs: 10_000})
    if (res.exitCode !== 0) return
    let st: {status?: string; pid?: number}
    try {
      st = JSON.parse(res.stdout) as {status?: string; pid?: number}
    } catch {
      return
    }
    if (st.status !== 'running') return
    const ps = st.pid && st.pid > 0 ? processState(st.pid) : undefined
    if (ps && ps !== 'Z' && ps !== 'X') {
      aliveSince ??= Date.now()
      if (Date.now() - aliveSince >= 1_000) return
    } else {
      aliveSince = undefined
    }
    await sleep(100)
  }
  logger().debug(`${name}: sandbox still reported running ${waitMs} ms after an OOM; deleting it`)
  await tryRun(bin, ['--root', root, 'delete', '--force', name], {timeoutMs: 30_000})
}
