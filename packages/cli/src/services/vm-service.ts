import {randomBytes} from 'node:crypto'
import {existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeSync} from 'node:fs'
import {join} from 'node:path'
import {FileTypeError, fileRunArgv, type Runtime} from '@agent/runtime-kit'
import {AgentError, conflict, errorMessage, usageError} from '../errors.js'
import {requireCapability, type ExecRequest, type ExecResult, type Launcher, type RuntimeState} from '../launchers/launcher.js'
import {LAUNCHER_OPTIONS} from '../launchers/options.js'
import {checkPolicy, normalizeAllow, normalizeHoles} from '../launchers/egress-policy.js'
import {DEFAULT_PERSIST_MIB, PERSIST_IMAGE} from '../launchers/disk.js'
import {allLaunchers, chooseLauncher, discoveringLaunchers, launcher as launcherByName, unusable} from '../launchers/select.js'
import {logger} from '../logging/logger.js'
import {pluginLabel, type RegisteredRuntime} from '../runtimes/registry.js'
import type {ListOptions} from '../state/vm-repository.js'
import {vmRecord, type LauncherName, type VmRecord} from '../state/vm-record.js'
import {alive} from '../system/index.js'
import {checkInputFiles, copyInputFiles, copyOutputs} from '../util/files.js'
import {checkLimits, checkName, checkVmRef} from '../util/validate.js'
import {launchContext, type ServiceContext} from './context.js'

/** The limits and options of a new VM are the record's own fields. */
export interface CreateOptions extends Pick<VmRecord, 'cpus' | 'memoryMib' | 'diskMib' | 'pids' | 'network' | 'persist'> {
  /** network `allow`: CIDRs and domain names (launchers/egress-policy.ts parseNetwork). */
  egressAllow?: readonly string[] | null
  /** `--allow-host ADDR[:PORT]` holes through the egress filter. */
  allowHosts?: readonly string[]
  /** Size of /persist in MiB (default 1024; a kept /persist keeps its own size). */
  persistMib?: number
  /** `python` or `python@3.12` (parsed by runtimes/registry.ts parseLanguageRef). */
  language: string
  /** The runtime version, when not given as `language@version`. */
  version?: string
  image?: string
  /** Attach the persist dir kept by `clean --keep-persist` of this earlier VM. */
  persistFrom?: string
  name?: string
  /** A launcher name; default: the first usable (launchers/select.ts). */
  launcher?: string
  /** That launcher's own options (launchers/options.ts), flag → value. */
  launcherOptions?: Readonly<Record<string, string>>
}

export interface CreateResult {
  vm: VmRecord
  imageReason: string
  launcherReason: string
}

export async function resolveVm(ctx: ServiceContext, ref: string): Promise<VmRecord> {
  return (await ctx.db()).resolve(checkVmRef(ref))
}

export async function runtimeFor(ctx: ServiceContext, vm: Pick<VmRecord, 'language' | 'id'>): Promise<RegisteredRuntime> {
  const reg = await ctx.runtimes()
  const found = reg.find(vm.language)
  if (!found)
    throw new AgentError('unavailable', `VM ${vm.id} is ${vm.language}, but no installed plugin provides that language any more`, {
      hint: 'reinstall the runtime plugin (`agent plugins install ...`), or clean the VM',
    })
  return found
}

/** Creates and boots a VM. On failure at any step, everything made so far is removed and the error names the step. */
export async function createVm(ctx: ServiceContext, o: CreateOptions): Promise<CreateResult> {
  // Absurd limits are refused before any launcher is looked at; the message names this host's
  // size when the launcher runs here (its bounds are never wider than the absolute ones).
  let absurd: unknown
  try {
    checkLimits(o, true)
  } catch (err) {
    absurd = err
  }
  if (o.name !== undefined) checkName(o.name)
  if (o.persistFrom !== undefined) checkVmRef(o.persistFrom, 'VM id for --persist-from')
  const reg = await ctx.runtimes()
  const {runtime, plugin, version} = reg.select(o.language, o.version)
  const {launcher, reason: launcherReason} = await chooseLauncher(o.launcher).catch((err: unknown) => {
    throw absurd ?? err
  })
  checkLimits(o, launcher.capabilities.remoteLimits === true)
  // Never hand out network silently where a launcher cannot switch it off.
  if (o.network === 'none') requireCapability(launcher, 'networkNone', 'usage')
  const policy = egressPolicy(o)
  if (o.network !== 'none' && launcher.capabilities.egressFilter !== true) {
    // An allow list or a hole that is not enforced would be a lie; a plain allow_all is what the launcher gives.
    if (o.network === 'allow' || policy.allowHosts) requireCapability(launcher, 'egressFilter', 'usage')
    logger().warn(`${launcher.name}: ${launcher.capabilities.egressFilter.why}`)
  }
  checkLauncherOptions(launcher.name, o.launcherOptions)
  const repo = await ctx.db()
  const persistFromDir = o.persistFrom ? ctx.paths.persistDir(o.persistFrom) : undefined
  if (persistFromDir) {
    if (await repo.get(o.persistFrom!)) throw conflict(`VM ${o.persistFrom} still exists; its persist dir can only be attached after \`agent vm clean --keep-persist ${o.persistFrom}\``)
    if (!existsSync(persistFromDir)) throw usageError(`no kept persist dir for ${o.persistFrom} (looked in ${persistFromDir})`)
  }
  const persistMib = persistSize(o, persistFromDir)
  // Image resolution (and its buildah calls) is loaded only by create.
  const {chooseImage, ensureImage} = await import('../images/resolve.js')
  const choice = await chooseImage({language: runtime.language, runtime, version, flagImage: o.image, buildah: ctx.buildah, stateRoot: ctx.paths.root})
  ctx.info(`image ${choice.image} (${choice.reason})`)
  await ensureImage(choice, ctx.buildah, runtime.language)

  let vm = vmRecord({
    id: `${runtime.language}-${randomBytes(4).toString('hex')}`,
    name: o.name ?? null,
    language: runtime.language,
    version: choice.version ?? null,
    plugin: pluginLabel(plugin),
    image: choice.image,
    imageSource: choice.source,
    launcher: launcher.name,
    cpus: o.cpus,
    memoryMib: o.memoryMib,
    diskMib: o.diskMib,
    pids: o.pids,
    network: o.network,
    ...policy,
    persist: o.persist || Boolean(o.persistFrom),
    persistMib,
    ownerPid: process.pid,
  })
  let step = 'preparing directories'
  // Built before the row exists: a missing guest init must not leave a half-made VM.
  const lctx = {
    ...launchContext(ctx, vm, runtime.env, (s) => {
      step = s
      stepHook('create')(s)
      logger().debug(`${vm.id}: ${s}`)
    }),
    options: o.launcherOptions,
  }
  const persistDir = lctx.persistDir
  await repo.insert(vm)
  try {
    mkdirSync(ctx.paths.inDir(vm.id), {recursive: true, mode: 0o700})
    if (persistDir) {
      if (persistFromDir) renameSync(persistFromDir, persistDir)
      else mkdirSync(persistDir, {recursive: true, mode: 0o700})
    }
    await testHook('create')
    ctx.signal?.throwIfAborted()
    const refs = await launcher.create(vm, lctx)
    ctx.signal?.throwIfAborted()
    step = 'recording the VM'
    vm = await repo.transition(vm.id, ['creating'], 'running', {...refs, ownerPid: null})
    return {vm, imageReason: choice.reason, launcherReason}
  } catch (err) {
    const failedAt = step // the rollback reports steps of its own
    logger().debug(`${vm.id}: create failed at ${failedAt}, rolling back: ${errorMessage(err)}`)
    await launcher.remove(vm, lctx).catch((e) => logger().warn(`rollback of ${vm.id}: ${errorMessage(e)}`))
    rmSync(ctx.paths.vmDir(vm.id), {recursive: true, force: true})
    if (persistDir && existsSync(persistDir)) {
      if (persistFromDir) renameSync(persistDir, persistFromDir)
      else rmSync(persistDir, {recursive: true, force: true})
    }
    await repo.delete(vm.id).catch(() => undefined)
    if (err instanceof AgentError) throw new AgentError(err.kind, `vm create failed at step "${failedAt}": ${err.message}`, {hint: err.hint, cause: err})
    throw new AgentError('internal', `vm create failed at step "${failedAt}": ${errorMessage(err)}`, {cause: err})
  }
}

/** The egress policy's fields, checked and normalized. */
function egressPolicy(o: CreateOptions): Pick<VmRecord, 'egressAllow' | 'allowHosts'> {
  if (o.network !== 'allow' && o.egressAllow?.length) throw usageError('an allow list needs --network allow:LIST')
  const p = {egressAllow: o.network === 'allow' ? normalizeAllow(o.egressAllow ?? []) : null, allowHosts: normalizeHoles(o.allowHosts)}
  checkPolicy({network: o.network, ...p})
  return p
}

/** /persist's size: a kept image keeps its own; otherwise --persist-size or the default. */
function persistSize(o: CreateOptions, persistFromDir: string | undefined): number | null {
  const wanted = o.persist || Boolean(o.persistFrom)
  if (!wanted) {
    if (o.persistMib !== undefined) throw usageError('--persist-size needs --persist (or --persist-from)')
    return null
  }
  if (o.persistMib !== undefined && (!Number.isInteger(o.persistMib) || o.persistMib < 16 || o.persistMib > 1024 * 1024)) {
    throw usageError(`--persist-size must be a whole number of MiB from 16 to ${1024 * 1024} (got ${o.persistMib})`)
  }
  const kept = persistFromDir ? join(persistFromDir, PERSIST_IMAGE) : undefined
  if (kept && existsSync(kept)) {
    const mib = Math.floor(statSync(kept).size / (1024 * 1024))
    if (o.persistMib !== undefined && o.persistMib !== mib) throw usageError(`the kept /persist of ${o.persistFrom} is ${mib} MiB and keeps that size (got --persist-size ${o.persistMib})`, 'leave out --persist-size')
    return mib
  }
  return o.persistMib ?? DEFAULT_PERSIST_MIB
}

/** A launcher's own option given for a VM of another launcher is a mistake, not something to ignore. */
function checkLauncherOptions(name: string, given: Readonly<Record<string, string>> = {}): void {
  for (const flag of Object.keys(given)) {
    const decl = LAUNCHER_OPTIONS.find((o) => o.flag === flag)
    if (!decl) throw usageError(`unknown launcher option --${flag}`)
    if (decl.launcher !== name) throw usageError(`--${flag} applies to ${decl.launcher} VMs, and this VM's launcher is ${name}`, `add --launcher ${decl.launcher}, or leave out --${flag}`)
  }
}

/**
 * Lets fault-injection tests stop agent at a chosen point: AGENT_TEST_PAUSE=create:2000 (before the
 * launcher starts), or at a launcher step, AGENT_TEST_PAUSE=create:disk:60000 (also start:, stop:,
 * clean: with the step names the launcher reports).
 */
function pauseSpec(): {at: string; ms: number} | undefined {
  const spec = process.env.AGENT_TEST_PAUSE
  if (!spec) return undefined
  const i = spec.lastIndexOf(':')
  const ms = Number(spec.slice(i + 1))
  return i > 0 && Number.isFinite(ms) && ms > 0 ? {at: spec.slice(0, i), ms} : {at: spec, ms: 1000}
}

export async function testHook(point: string): Promise<void> {
  const p = pauseSpec()
  if (p?.at !== point) return
  process.stderr.write(`agent: test pause at ${point}\n`)
  await new Promise((r) => setTimeout(r, p.ms))
}

/** The same at a launcher step (a synchronous callback): blocks this process, which the test then kills. */
function stepHook(verb: string): (step: string) => void {
  return (step) => {
    logger().debug(`${verb}: ${step}`)
    const p = pauseSpec()
    if (p?.at !== `${verb}:${step}`) return
    writeSync(2, `agent: test pause at ${p.at}\n`)
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, p.ms)
  }
}

/** Lists VMs after reconciling the database with what each runtime reports. */
export async function listVms(ctx: ServiceContext, opts: ListOptions = {}): Promise<VmRecord[]> {
  const repo = await ctx.db()
  const rows = await repo.list({all: true})
  // The cluster is the source of truth for launchers whose sandboxes live there: VMs found with no row get one back.
  for (const l of await discoveringLaunchers()) {
    let found: VmRecord[]
    try {
      found = await l.discover!({paths: ctx.paths})
    } catch (err) {
      logger().warn(`cannot ask ${l.name} for this state dir's VMs: ${errorMessage(err)}`)
      continue
    }
    for (const vm of found) {
      if (rows.some((r) => r.id === vm.id)) continue
      const clash = vm.name !== null && rows.some((r) => r.name === vm.name)
      rows.push(await repo.insert(clash ? {...vm, name: null} : vm))
      logger().info(`${vm.id}: found on ${l.name} without a database row; recorded again`)
    }
  }
  const byLauncher = new Map<LauncherName, VmRecord[]>()
  for (const vm of rows) {
    if ((vm.status === 'creating' || vm.status === 'cleaning') && !alive(vm.ownerPid)) {
      const was = vm.status
      Object.assign(vm, await repo.update(vm.id, {status: 'failed', ownerPid: null, lastError: `agent (pid ${vm.ownerPid}) died while ${was === 'creating' ? 'creating' : 'cleaning'} this VM`}))
      continue
    }
    if (vm.status === 'running' || vm.status === 'stopped' || vm.status === 'missing') {
      if (!byLauncher.has(vm.launcher)) byLauncher.set(vm.launcher, [])
      byLauncher.get(vm.launcher)!.push(vm)
    }
  }
  for (const [name, vms] of byLauncher) {
    let states: Map<string, RuntimeState>
    try {
      const l = await launcherByName(name)
      states = await l.status(vms, {paths: ctx.paths})
    } catch (err) {
      logger().warn(`cannot ask ${name} for VM states: ${errorMessage(err)}`)
      continue
    }
    for (const vm of vms) {
      const seen = states.get(vm.id)
      if (seen && seen !== vm.status) {
        logger().debug(`${vm.id}: database says ${vm.status}, ${name} says ${seen}`)
        Object.assign(vm, await repo.update(vm.id, {status: seen, lastError: seen === 'running' ? vm.lastError : `${name} reported the sandbox ${seen}`}))
      }
    }
  }
  if (opts.status) return rows.filter((v) => v.status === opts.status)
  if (opts.all) return rows
  return rows.filter((v) => v.status === 'running' || v.status === 'creating')
}

export async function stopVm(ctx: ServiceContext, ref: string): Promise<VmRecord> {
  const vm = await resolveVm(ctx, ref)
  if (vm.status === 'stopped') return vm
  const l = await launcherFor(vm)
  const {runtime} = await runtimeFor(ctx, vm).catch(() => ({runtime: undefined}))
  await l.stop(vm, launchContext(ctx, vm, runtime?.env ?? {}, stepHook('stop')))
  return (await ctx.db()).transition(vm.id, ['running', 'stopped', 'failed', 'missing'], 'stopped', {ownerPid: null})
}

export async function startVm(ctx: ServiceContext, ref: string): Promise<VmRecord> {
  const vm = await resolveVm(ctx, ref)
  if (vm.status === 'running') return vm
  if (vm.status !== 'stopped') throw conflict(`VM ${vm.id} is ${vm.status} and cannot be started`, vm.status === 'missing' || vm.status === 'failed' ? `clean it with \`agent vm clean ${vm.id}\`` : undefined)
  const l = await launcherFor(vm)
  const {runtime} = await runtimeFor(ctx, vm)
  await l.start(vm, launchContext(ctx, vm, runtime.env, stepHook('start')))
  return (await ctx.db()).transition(vm.id, ['stopped'], 'running', {lastError: null})
}

async function launcherFor(vm: VmRecord): Promise<Launcher> {
  const l = await launcherByName(vm.launcher)
  const a = await l.available()
  if (!a.ok) throw unusable(l.name, a)
  return l
}

export interface CleanResult {
  id: string
  keptPersist: string | null
}

/** Removes a VM completely: sandbox, working container, dirs, persist dir (unless kept), then the row. */
export async function cleanVm(ctx: ServiceContext, ref: string, keepPersist = false): Promise<CleanResult> {
  const found = await resolveVm(ctx, ref)
  if ((found.status === 'creating' || found.status === 'cleaning') && alive(found.ownerPid) && found.ownerPid !== process.pid) {
    throw conflict(`VM ${found.id} is being ${found.status === 'creating' ? 'created' : 'cleaned'} by agent pid ${found.ownerPid}`, 'wait for it to finish')
  }
  // A missing binary must fail before anything is touched, so no data is lost.
  const l = await launcherFor(found)
  const repo = await ctx.db()
  const vm = await repo.transition(found.id, ['running', 'stopped', 'failed', 'missing', 'creating', 'cleaning'], 'cleaning', {ownerPid: process.pid})
  try {
    await testHook('clean')
    await l.remove(vm, launchContext(ctx, vm, {}, stepHook('clean')))
    rmSync(ctx.paths.vmDir(vm.id), {recursive: true, force: true})
    const persistDir = ctx.paths.persistDir(vm.id)
    const kept = keepPersist && existsSync(persistDir)
    if (!kept) rmSync(persistDir, {recursive: true, force: true})
    await repo.delete(vm.id)
    return {id: vm.id, keptPersist: kept ? persistDir : null}
  } catch (err) {
    await repo.update(vm.id, {status: 'failed', ownerPid: null, lastError: `clean failed: ${errorMessage(err)}`}).catch(() => undefined)
    throw err
  }
}

/**
 * Leftovers with no database row (an agent killed between making a resource and recording it,
 * or between removing the row and the dir). createVm makes `vms/<id>/` before any launcher
 * step, so this state dir's leftovers are exactly its VM dirs without a row; working containers
 * in a store shared with other state dirs are never guessed at. Each is removed through every
 * launcher that could have made it; all launcher removals are idempotent.
 */
export async function sweepOrphans(ctx: ServiceContext): Promise<string[]> {
  const ids = existsSync(ctx.paths.vms) ? readdirSync(ctx.paths.vms) : []
  const repo = await ctx.db()
  const removed: string[] = []
  let sweepers: Launcher[] | undefined
  for (const id of ids) {
    if (!/^[a-z][a-z0-9-]*-[0-9a-f]{8}$/.test(id) || (await repo.get(id))) continue
    sweepers ??= await usableSweepers()
    const stub = orphanRecord(id)
    for (const l of sweepers) {
      await l.remove({...stub, launcher: l.name}, launchContext(ctx, stub, {})).catch((e) => logger().warn(`orphan ${id} (${l.name}): ${errorMessage(e)}`))
    }
    rmSync(ctx.paths.vmDir(id), {recursive: true, force: true})
    removed.push(id)
  }
  return removed
}

/** The usable launchers whose remove() works from an id alone. */
async function usableSweepers(): Promise<Launcher[]> {
  const out: Launcher[] = []
  for (const l of await allLaunchers()) if (l.capabilities.sweepsOrphans && (await l.available()).ok) out.push(l)
  return out
}

function orphanRecord(id: string): VmRecord {
  return vmRecord({id, status: 'failed', containerRef: `agent-${id}`})
}
