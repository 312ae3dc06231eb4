/**
 * E2B sandboxes over agent VMs. A sandbox *is* a VM of the shared state: created, listed,
 * resumed and cleaned through the VM service, like `agent vm ...`. What E2B adds (template id,
 * metadata, env vars, lifetime, origin) is kept next to the VM in `vms/<id>/e2b.json`, so it
 * is removed with the VM whoever cleans it, and survives a crash of the server.
 */
import {createHmac} from 'node:crypto'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {cleanVm, createVm, errorMessage, listVms, logger, parseLanguageRef, resolveVm, startVm, writeFileAtomic, type ServiceContext, type VmRecord} from './floor.js'
import {DEFAULT_HOME, runInGuest, scriptCommand} from './guest.js'
import {HttpError} from './http-errors.js'
import {Lifetimes} from './lifetimes.js'

/** Reported to the SDK: at least 0.5.7, so it uses the newest file paths (octet-stream uploads). */
export const ENVD_VERSION = '0.5.7'
export const DEFAULT_TIMEOUT_SEC = 300
export const MAX_TIMEOUT_SEC = 86_400

export type Origin = 'api' | 'pool' | 'cli'

export interface SandboxMeta {
  templateID: string
  origin: Origin
  /** The code interpreter (port 49999) is served for this sandbox. */
  interpreter: boolean
  metadata: Record<string, string>
  envVars: Record<string, string>
  startedAt: string
  /** Epoch ms when the server kills the sandbox; null: no lifetime (CLI VMs until given one). */
  endAt: number | null
}

export interface Sandbox {
  vm: VmRecord
  meta: SandboxMeta
}

export interface CreateBody {
  templateID?: unknown
  timeout?: unknown
  metadata?: unknown
  envVars?: unknown
  allow_internet_access?: unknown
  autoPause?: unknown
}

export interface SandboxLimits {
  cpus: number
  memoryMib: number
  diskMib: number
  pids: number
}

export const DEFAULT_LIMITS: SandboxLimits = {cpus: 1, memoryMib: 512, diskMib: 1024, pids: 512}

interface Template {
  language: string
  interpreter: boolean
}

/** `base` is python; `code-interpreter-v1` is python with the interpreter; else a language (or `language@version`). */
export function templateOf(id: string): Template {
  if (id === 'base') return {language: 'python', interpreter: false}
  if (id === 'code-interpreter-v1' || id === 'code-interpreter') return {language: 'python', interpreter: true}
  return {language: id, interpreter: false}
}

function stringMap(v: unknown, what: string): Record<string, string> {
  if (v === undefined || v === null) return {}
  if (typeof v !== 'object' || Array.isArray(v)) throw new HttpError(400, `${what} must be an object of strings`)
  const out: Record<string, string> = {}
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (typeof val !== 'string') throw new HttpError(400, `${what}.${k} must be a string`)
    if (k.includes('\0') || val.includes('\0')) throw new HttpError(400, `${what} must not contain NUL bytes`)
    out[k] = val
  }
  return out
}

export function timeoutSec(v: unknown, dflt: number): number {
  if (v === undefined || v === null) return dflt
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_TIMEOUT_SEC) throw new HttpError(400, `timeout must be a whole number of seconds from 0 to ${MAX_TIMEOUT_SEC}`)
  return v
}

export interface SandboxesOptions {
  apiKey: string
  /** Warm VMs kept per language. */
  pool: Record<string, number>
  keepPool: boolean
  limits?: SandboxLimits
}

export class Sandboxes {
  private readonly lifetimes = new Lifetimes((id) => {
    logger().info(`${id}: lifetime over, killing the sandbox`)
    this.onGone(id)
    cleanVm(this.ctx, id)
      .then(() => this.metas.delete(id))
      .catch((err) => logger().warn(`${id}: kill at end of lifetime failed: ${errorMessage(err)}`))
  })
  private readonly metas = new Map<string, SandboxMeta>()
  /** Unassigned, booted pool VMs per language. */
  private readonly pool = new Map<string, VmRecord[]>()
  private readonly filling = new Map<string, number>()
  private readonly limits: SandboxLimits
  private closed = false
  /** Called when a sandbox goes away (processes and interpreters drop their state). */
  onGone: (id: string) => void = () => undefined

  constructor(
    readonly ctx: ServiceContext,
    private readonly opts: SandboxesOptions,
  ) {
    this.limits = opts.limits ?? DEFAULT_LIMITS
  }

  /** Per-sandbox token for envd and interpreter calls, derived from the API key (stable across restarts). */
  token(id: string): string {
    return createHmac('sha256', this.opts.apiKey).update(`sandbox:${id}`).digest('base64url')
  }

  private metaPath(id: string): string {
    return join(this.ctx.paths.vmDir(id), 'e2b.json')
  }

  private readMeta(vm: VmRecord): SandboxMeta {
    const cached = this.metas.get(vm.id)
    if (cached) return cached
    let meta: SandboxMeta | undefined
    try {
      if (existsSync(this.metaPath(vm.id))) meta = JSON.parse(readFileSync(this.metaPath(vm.id), 'utf8')) as SandboxMeta
    } catch (err) {
      logger().warn(`${vm.id}: unreadable e2b.json: ${errorMessage(err)}`)
    }
    meta ??= {templateID: vm.version ? `${vm.language}@${vm.version}` : vm.language, origin: 'cli', interpreter: false, metadata: {}, envVars: {}, startedAt: vm.createdAt.toISOString(), endAt: null}
    this.metas.set(vm.id, meta)
    return meta
  }

  private writeMeta(id: string, meta: SandboxMeta): void {
    writeFileAtomic(this.metaPath(id), JSON.stringify(meta))
    this.metas.set(id, meta)
  }

  /** The sandbox for an id, or 404 (pool VMs are not sandboxes until claimed). */
  async get(id: string): Promise<Sandbox> {
    let vm: VmRecord
    try {
      vm = await resolveVm(this.ctx, id)
    } catch (err) {
      throw new HttpError(404, `sandbox "${id}" not found`)
    }
    if (vm.id !== id) throw new HttpError(404, `sandbox "${id}" not found`) // names are not sandbox ids
    const meta = this.readMeta(vm)
    if (meta.origin === 'pool') throw new HttpError(404, `sandbox "${id}" not found`)
    return {vm, meta}
  }

  /** A running sandbox, for envd and interpreter calls. */
  async running(id: string): Promise<Sandbox> {
    const sb = await this.get(id)
    if (sb.vm.status !== 'running') throw new HttpError(502, `sandbox "${id}" is ${sb.vm.status}, not running`)
    return sb
  }

  async create(body: CreateBody): Promise<Sandbox> {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'the request body must be a JSON object')
    const templateID = body.templateID === undefined ? 'base' : body.templateID
    if (typeof templateID !== 'string' || templateID === '') throw new HttpError(400, 'templateID must be a non-empty string')
    const timeout = timeoutSec(body.timeout, DEFAULT_TIMEOUT_SEC)
    const metadata = stringMap(body.metadata, 'metadata')
    const envVars = stringMap(body.envVars, 'envVars')
    if (body.allow_internet_access !== undefined && typeof body.allow_internet_access !== 'boolean') throw new HttpError(400, 'allow_internet_access must be a boolean')
    if (body.autoPause === true) throw new HttpError(400, 'autoPause is not supported by agent serve: sandboxes are killed when their timeout ends')
    const network = body.allow_internet_access === false ? 'none' : 'allow_all'
    const tpl = templateOf(templateID)
    const ref = parseLanguageRef(tpl.language)
    const reg = await this.ctx.runtimes()
    // Unknown language or version: a usage error naming the installed ones (400).
    const sel = reg.select(tpl.language)
    const now = Date.now()
    const meta: SandboxMeta = {templateID, origin: 'api', interpreter: tpl.interpreter, metadata, envVars, startedAt: new Date(now).toISOString(), endAt: timeout > 0 ? now + timeout * 1000 : null}

    const claimed = network === 'allow_all' && ref.version === undefined ? this.claim(sel.runtime.language) : undefined
    let vm: VmRecord
    if (claimed) {
      vm = claimed
      logger().debug(`${vm.id}: claimed from the ${sel.runtime.language} pool`)
    } else {
      vm = (await createVm(this.ctx, {language: tpl.language, network, persist: false, ...this.limits})).vm
    }
    try {
      if (!claimed) await this.prepare(vm)
      this.writeMeta(vm.id, meta)
    } catch (err) {
      await cleanVm(this.ctx, vm.id).catch((e) => logger().warn(`rollback of ${vm.id}: ${errorMessage(e)}`))
      this.metas.delete(vm.id)
      throw err
    }
    this.arm(vm.id, meta.endAt)
    if (claimed) this.refill(sel.runtime.language)
    return {vm, meta}
  }

  private readonly prepared = new Map<string, Promise<void>>()

  /** A CLI VM reached through the API is prepared on first use (API and pool VMs were at boot). */
  async prepareOnce(sb: Sandbox): Promise<void> {
    if (sb.meta.origin !== 'cli') return
    let p = this.prepared.get(sb.vm.id)
    if (!p) {
      p = this.prepare(sb.vm)
      this.prepared.set(sb.vm.id, p)
      p.catch(() => this.prepared.delete(sb.vm.id))
    }
    await p
  }

  /** What every sandbox needs before the SDK talks to it: the default user's home. */
  private async prepare(vm: VmRecord): Promise<void> {
    const r = await runInGuest(this.ctx, vm, {cmd: scriptCommand('mkdir -p -- "$1" && chmod 0777 -- "$1"', [DEFAULT_HOME]), timeoutSec: 30})
    if (r.exitCode !== 0) throw new HttpError(500, `preparing sandbox ${vm.id} failed: ${r.stderr.trim() || `exit ${r.exitCode}`}`)
  }

  async list(): Promise<Sandbox[]> {
    const vms = await listVms(this.ctx, {all: true})
    const out: Sandbox[] = []
    for (const vm of vms) {
      if (vm.status !== 'running' && vm.status !== 'stopped') continue
      const meta = this.readMeta(vm)
      if (meta.origin === 'pool') continue
      out.push({vm, meta})
    }
    return out
  }

  async kill(id: string): Promise<void> {
    await this.get(id)
    this.lifetimes.disarm(id)
    this.onGone(id)
    await cleanVm(this.ctx, id)
    this.metas.delete(id)
  }

  /** Sets the lifetime to `sec` from now (E2B's setTimeout). */
  async setTimeout(id: string, sec: number): Promise<void> {
    const sb = await this.get(id)
    const meta = {...sb.meta, endAt: sec > 0 ? Date.now() + sec * 1000 : null}
    this.writeMeta(id, meta)
    this.arm(id, meta.endAt)
  }

  /** Resumes a stopped sandbox; a timeout given sets the lifetime from now. */
  async connect(id: string, sec: number | undefined): Promise<Sandbox> {
    let sb = await this.get(id)
    if (sb.vm.status === 'stopped') sb = {vm: await startVm(this.ctx, id), meta: sb.meta}
    else if (sb.vm.status !== 'running') throw new HttpError(409, `sandbox "${id}" is ${sb.vm.status} and cannot be connected to`)
    if (sec !== undefined) await this.setTimeout(id, sec)
    return {vm: sb.vm, meta: this.metas.get(id) ?? sb.meta}
  }

  private arm(id: string, endAt: number | null): void {
    this.lifetimes.disarm(id)
    if (endAt !== null && !this.closed) this.lifetimes.arm(id, endAt)
  }


  /**
   * At start: adopt the VMs an earlier server left (lifetimes re-armed, expired ones killed,
   * unclaimed pool VMs back in the pool), after reconciling the state as `vm list` does.
   */
  async adopt(): Promise<{adopted: number; expired: number; pooled: number}> {
    const vms = await listVms(this.ctx, {all: true})
    let adopted = 0
    let expired = 0
    let pooled = 0
    for (const vm of vms) {
      if (!existsSync(this.metaPath(vm.id))) continue
      const meta = this.readMeta(vm)
      if (meta.origin === 'pool') {
        const want = this.opts.pool[vm.language] ?? 0
        const have = this.pool.get(vm.language) ?? []
        if (vm.status === 'running' && have.length < want) {
          this.pool.set(vm.language, [...have, vm])
          pooled++
        } else {
          await cleanVm(this.ctx, vm.id).catch((e) => logger().warn(`${vm.id}: ${errorMessage(e)}`))
        }
        continue
      }
      if (meta.endAt !== null && meta.endAt <= Date.now()) {
        this.onGone(vm.id)
        await cleanVm(this.ctx, vm.id).catch((e) => logger().warn(`${vm.id}: ${errorMessage(e)}`))
        expired++
        continue
      }
      this.arm(vm.id, meta.endAt)
      adopted++
    }
    return {adopted, expired, pooled}
  }

  // ---------------------------------------------------------------- warm pools

  /** Starts filling every pool in the background. */
  fillPools(): void {
    for (const language of Object.keys(this.opts.pool)) this.refill(language)
  }

  private claim(language: string): VmRecord | undefined {
    const q = this.pool.get(language)
    const vm = q?.shift()
    return vm
  }

  /** Boots pool VMs until the pool holds its target (counting boots under way). */
  private refill(language: string): void {
    const want = this.opts.pool[language] ?? 0
    const short = want - (this.pool.get(language)?.length ?? 0) - (this.filling.get(language) ?? 0)
    for (let i = 0; i < short && !this.closed; i++) {
      this.filling.set(language, (this.filling.get(language) ?? 0) + 1)
      void this.bootPoolVm(language)
        .then((vm) => {
          if (this.closed) return void cleanVm(this.ctx, vm.id).catch(() => undefined)
          this.pool.set(language, [...(this.pool.get(language) ?? []), vm])
        })
        .catch((err) => logger().warn(`pool ${language}: boot failed: ${errorMessage(err)}`))
        .finally(() => this.filling.set(language, (this.filling.get(language) ?? 1) - 1))
    }
  }

  private async bootPoolVm(language: string): Promise<VmRecord> {
    const {vm} = await createVm(this.ctx, {language, network: 'allow_all', persist: false, ...this.limits})
    try {
      await this.prepare(vm)
      this.writeMeta(vm.id, {templateID: language, origin: 'pool', interpreter: false, metadata: {}, envVars: {}, startedAt: new Date().toISOString(), endAt: null})
    } catch (err) {
      await cleanVm(this.ctx, vm.id).catch(() => undefined)
      throw err
    }
    return vm
  }

  poolSizes(): Record<string, number> {
    return Object.fromEntries([...this.pool].map(([k, v]) => [k, v.length]))
  }

  /** Stops timers; cleans unclaimed pool VMs unless keepPool. Sandboxes themselves stay. */
  async close(): Promise<void> {
    this.closed = true
    this.lifetimes.clear()
    if (this.opts.keepPool) return
    const all = [...this.pool.values()].flat()
    this.pool.clear()
    for (const vm of all) await cleanVm(this.ctx, vm.id).catch((e) => logger().warn(`pool VM ${vm.id}: ${errorMessage(e)}`))
  }
}
