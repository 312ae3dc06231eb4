/**
 * The sandboxes of MCP servers. An MCP sandbox is a VM of the shared state (`agent vm list`
 * shows it), created and cleaned through the VM service like `agent vm ...`. What MCP adds is
 * kept next to the VM in `vms/<id>/mcp.json` (removed with the VM, whoever cleans it): the pid
 * of the server that owns it, its lifetime, and whether it outlives its server (--keep).
 *
 * Tools only reach VMs that have that file: an assistant can touch the sandboxes made through
 * MCP, never the VMs someone made with `agent vm create` or through the E2B API.
 */
import {randomBytes} from 'node:crypto'
import {existsSync, readFileSync} from 'node:fs'
import {posix, join} from 'node:path'
import {Readable} from 'node:stream'
import {cleanVm, createVm, errorMessage, execVm, listVms, logger, resolveVm, writeFileAtomic, AgentError, type ExecResult, type ServiceContext, type VmRecord} from '../floor.js'
import {GuestFs} from '../guest-fs.js'
import {Lifetimes} from '../lifetimes.js'
import {scriptCommand} from '../guest.js'
import {OPTION_FLAGS, type McpOptions} from './options.js'

export type NetworkMode = 'none' | 'allow_all'

/** The home of the guest's user (root): relative paths and commands start here. */
export const GUEST_HOME = '/root'

export interface McpMeta {
  createdBy: 'agent mcp'
  kind: 'sandbox' | 'run'
  /** The MCP server process that owns it (timers, cleaning at exit). */
  ownerPid: number
  startedAt: string
  /** Epoch ms when it is destroyed. */
  endAt: number
  keep: boolean
}

export interface McpSandbox {
  vm: VmRecord
  meta: McpMeta
}

export interface CreateRequest {
  language: string
  network?: NetworkMode
  memoryMib?: number
  cpus?: number
  ttlSec?: number
}

export interface RunOutcome extends ExecResult {
  language: string
  version: string | null
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

const usage = (msg: string, hint?: string) => new AgentError('usage', msg, {hint})

/** A guest path: absolute, or relative to the guest's home; checked for what the guest cannot take. */
export function guestPathOf(p: string): string {
  if (typeof p !== 'string' || p.trim() === '') throw usage('path must be a non-empty string')
  if (p.includes('\0')) throw usage('path must not contain NUL bytes')
  const abs = posix.normalize(p.startsWith('/') ? p : posix.join(GUEST_HOME, p))
  if (abs === '/' || abs.endsWith('/')) throw usage(`path ${JSON.stringify(p)} names a directory, not a file`)
  return abs
}

export class McpSandboxes {
  private readonly lifetimes = new Lifetimes((id) => {
    logger().info(`${id}: lifetime over, destroying the MCP sandbox`)
    this.destroyOwn(id).catch((err) => logger().warn(`${id}: destroying at end of lifetime failed: ${errorMessage(err)}`))
  })
  /** VMs this server holds: its sandboxes and run_code's VMs while they run. */
  private readonly held = new Set<string>()
  /** Creations and runs under way, awaited at close. */
  private readonly pending = new Set<Promise<unknown>>()
  private readonly closing = new AbortController()
  private closed: Promise<void> | undefined

  constructor(
    readonly ctx: ServiceContext,
    readonly opts: McpOptions,
  ) {}

  /** Aborted when the server closes (or its context is aborted): in-flight commands stop. */
  get signal(): AbortSignal {
    return this.ctx.signal ? AbortSignal.any([this.ctx.signal, this.closing.signal]) : this.closing.signal
  }

  private metaPath(id: string): string {
    return join(this.ctx.paths.vmDir(id), 'mcp.json')
  }

  readMeta(id: string): McpMeta | undefined {
    const p = this.metaPath(id)
    if (!existsSync(p)) return undefined
    try {
      const m = JSON.parse(readFileSync(p, 'utf8')) as McpMeta
      return m && m.createdBy === 'agent mcp' ? m : undefined
    } catch (err) {
      logger().warn(`${id}: unreadable mcp.json: ${errorMessage(err)}`)
      return undefined
    }
  }

  private writeMeta(id: string, meta: McpMeta): void {
    writeFileAtomic(this.metaPath(id), JSON.stringify(meta))
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.pending.add(p)
    const done = () => this.pending.delete(p)
    p.then(done, done)
    return p
  }

  private checkOpen(): void {
    if (this.closed) throw new AgentError('unavailable', 'this MCP server is shutting down')
  }

  private checkRoom(): void {
    if (this.held.size >= this.opts.maxSandboxes)
      throw new AgentError('conflict', `this MCP server already holds ${this.held.size} sandboxes, its limit (${OPTION_FLAGS.maxSandboxes} ${this.opts.maxSandboxes})`, {
        hint: 'destroy a sandbox you no longer need (destroy_sandbox), or wait for one to end',
      })
  }

  private limit(what: string, v: number | undefined, dflt: number, max: number, maxFlag: string, unit = ''): number {
    if (v === undefined) return dflt
    if (v > max) throw usage(`${what} ${v}${unit} is above this server's maximum of ${max}${unit}`, `ask for at most ${max}${unit}, or start the server with a larger ${maxFlag}`)
    return v
  }

  /** The network a call asked for, if this server allows it. */
  network(asked: NetworkMode | undefined): NetworkMode {
    if (asked === undefined || asked === 'none') return 'none'
    if (!this.opts.allowNetwork)
      throw usage(`network "${asked}" is not allowed: this MCP server was started without --allow-network, so sandboxes have no network`, 'leave network out (or "none"), or restart the server with --allow-network')
    return asked
  }

  timeout(asked: number | undefined): number {
    return this.limit('timeout_seconds', asked, this.opts.timeoutSec, this.opts.maxTimeoutSec, OPTION_FLAGS.maxTimeoutSec, 's')
  }

  /** Boots a VM and records it as this server's; on any failure nothing is left behind. */
  private async boot(kind: McpMeta['kind'], r: CreateRequest): Promise<McpSandbox> {
    this.checkOpen()
    this.checkRoom()
    const network = this.network(r.network)
    const memoryMib = this.limit('memory_mib', r.memoryMib, this.opts.memoryMib, this.opts.maxMemoryMib, OPTION_FLAGS.maxMemoryMib, ' MiB')
    const cpus = this.limit('cpus', r.cpus, this.opts.cpus, this.opts.maxCpus, OPTION_FLAGS.maxCpus)
    const ttlSec = this.limit('ttl_seconds', r.ttlSec, this.opts.ttlSec, this.opts.maxTtlSec, OPTION_FLAGS.maxTtlSec, 's')
    const reservation = `pending-${randomBytes(4).toString('hex')}`
    this.held.add(reservation) // counts against --max-sandboxes while it boots
    try {
      const {vm} = await createVm(this.ctx, {language: r.language, network, memoryMib, cpus, diskMib: this.opts.diskMib, pids: this.opts.pids, persist: false})
      const now = Date.now()
      const meta: McpMeta = {createdBy: 'agent mcp', kind, ownerPid: process.pid, startedAt: new Date(now).toISOString(), endAt: now + ttlSec * 1000, keep: kind === 'sandbox' && this.opts.keep}
      try {
        this.writeMeta(vm.id, meta)
      } catch (err) {
        await cleanVm(this.ctx, vm.id).catch((e) => logger().warn(`rollback of ${vm.id}: ${errorMessage(e)}`))
        throw err
      }
      this.held.add(vm.id)
      if (this.closed) {
        // The server began closing while this VM booted: it must not outlive it.
        await this.destroyOwn(vm.id)
        throw new AgentError('unavailable', 'this MCP server is shutting down')
      }
      return {vm, meta}
    } finally {
      this.held.delete(reservation)
    }
  }

  async create(r: CreateRequest): Promise<McpSandbox> {
    const sb = await this.track(this.boot('sandbox', r))
    this.arm(sb.vm.id, sb.meta.endAt)
    return sb
  }

  /** An MCP sandbox by id: unknown ids, and VMs not made through MCP, are errors. */
  async get(id: string): Promise<McpSandbox> {
    const vm = await resolveVm(this.ctx, id)
    const meta = this.readMeta(vm.id)
    if (!meta || meta.kind !== 'sandbox')
      throw new AgentError('not_found', `sandbox ${JSON.stringify(id)} was not created through MCP, so MCP tools do not act on it`, {
        hint: 'list_sandboxes shows the sandboxes you can use; create one with create_sandbox',
      })
    return {vm, meta}
  }

  async running(id: string): Promise<McpSandbox> {
    const sb = await this.get(id)
    if (sb.vm.status !== 'running')
      throw new AgentError('conflict', `sandbox ${sb.vm.id} is ${sb.vm.status}, not running${sb.vm.lastError ? ` (${sb.vm.lastError})` : ''}`, {hint: 'destroy it (destroy_sandbox) and create a new one'})
    return sb
  }

  /** Every MCP sandbox of the state dir (of any MCP server), after reconciling like `vm list`. */
  async list(): Promise<McpSandbox[]> {
    const out: McpSandbox[] = []
    for (const vm of await listVms(this.ctx, {all: true})) {
      const meta = this.readMeta(vm.id)
      if (meta?.kind === 'sandbox' && vm.status !== 'cleaning') out.push({vm, meta})
    }
    return out
  }

  async destroy(id: string): Promise<string> {
    const sb = await this.get(id)
    await this.destroyOwn(sb.vm.id)
    return sb.vm.id
  }

  private async destroyOwn(id: string): Promise<void> {
    this.lifetimes.disarm(id)
    try {
      await cleanVm(this.ctx, id)
    } finally {
      this.held.delete(id)
    }
  }

  async exec(id: string, o: {command: string; timeoutSec?: number; workdir?: string; env?: Record<string, string>; signal?: AbortSignal}): Promise<{vm: VmRecord; result: ExecResult; timeoutSec: number}> {
    const timeoutSec = this.timeout(o.timeoutSec)
    if (o.command.includes('\0')) throw usage('command must not contain NUL bytes')
    const workdir = o.workdir === undefined ? GUEST_HOME : o.workdir
    if (!workdir.startsWith('/') || workdir.includes('\0')) throw usage(`workdir must be an absolute path in the sandbox (got ${JSON.stringify(o.workdir)})`)
    const sb = await this.running(id)
    const {vm, result} = await this.track(
      execVm(this.ctx, sb.vm, {cmd: o.command, env: o.env, workdir, timeoutSec, output: 'capture', maxCaptureBytes: this.opts.maxOutputBytes, signal: this.callSignal(o.signal)}),
    )
    return {vm, result, timeoutSec}
  }

  /** One-shot: a fresh VM (network none, default limits), the code written into it and run the language's way, then the VM cleaned. */
  async runCode(o: {language: string; code: string; timeoutSec?: number; signal?: AbortSignal}): Promise<{vm: VmRecord; result: ExecResult; timeoutSec: number}> {
    const timeoutSec = this.timeout(o.timeoutSec)
    const reg = await this.ctx.runtimes()
    const {runtime} = reg.select(o.language) // unknown language or version: the CLI's usage error, before any VM exists
    const [ext, argv] = Object.entries(runtime.fileRun)[0]
    const file = `/tmp/agent-run/main${ext}`
    const run = argv.map((a) => a.replaceAll('{file}', file))
    const work = async () => {
      const {vm} = await this.boot('run', {language: o.language})
      try {
        const cmd = scriptCommand(`mkdir -p /tmp/agent-run && cat > "$1" || exit 125\nshift\nexec "$@"`, [file, ...run])
        const {result} = await execVm(this.ctx, vm, {
          cmd,
          stdin: Readable.from([Buffer.from(o.code, 'utf8')]),
          workdir: GUEST_HOME,
          timeoutSec,
          output: 'capture',
          maxCaptureBytes: this.opts.maxOutputBytes,
          signal: this.callSignal(o.signal),
        })
        return {vm, result, timeoutSec}
      } finally {
        await this.destroyOwn(vm.id).catch((e) => logger().warn(`cleaning run_code VM ${vm.id}: ${errorMessage(e)}`))
      }
    }
    return this.track(work())
  }

  async readFile(id: string, path: string): Promise<{id: string; path: string; data: Buffer}> {
    const p = guestPathOf(path)
    const sb = await this.running(id)
    try {
      const data = await this.track(new GuestFs(this.ctx, sb.vm).read(p, this.opts.maxFileBytes))
      return {id: sb.vm.id, path: p, data}
    } catch (err) {
      if ((err as {statusCode?: number}).statusCode === 413)
        throw usage(`file ${p} is larger than this server's ${this.opts.maxFileBytes}-byte limit for read_file`, `read part of it with exec (say \`head -c 65536 ${p}\`), or start the server with a larger --max-file-size`)
      throw err
    }
  }

  async writeFile(id: string, path: string, data: Buffer, signal?: AbortSignal): Promise<{id: string; path: string; bytes: number}> {
    const p = guestPathOf(path)
    if (data.length > this.opts.maxFileBytes)
      throw usage(`content is ${data.length} bytes, above this server's ${this.opts.maxFileBytes}-byte limit for write_file`, 'write it in parts (append with exec), or start the server with a larger --max-file-size')
    const sb = await this.running(id)
    await this.track(new GuestFs(this.ctx, sb.vm).write(p, Readable.from([data]), this.callSignal(signal)))
    return {id: sb.vm.id, path: p, bytes: data.length}
  }

  private callSignal(s: AbortSignal | undefined): AbortSignal {
    return s ? AbortSignal.any([s, this.signal]) : this.signal
  }

  private arm(id: string, endAt: number): void {
    this.lifetimes.disarm(id)
    if (!this.closed) this.lifetimes.arm(id, endAt)
  }


  /**
   * At start: MCP VMs whose server died (kill -9, a crash) are cleaned when they were not kept
   * or their lifetime is over; kept ones still in their lifetime are adopted (timer re-armed).
   */
  async adopt(): Promise<{cleaned: number; adopted: number}> {
    let cleaned = 0
    let adopted = 0
    for (const vm of await listVms(this.ctx, {all: true})) {
      const meta = this.readMeta(vm.id)
      if (!meta || meta.ownerPid === process.pid || pidAlive(meta.ownerPid)) continue
      if (vm.status === 'creating' || vm.status === 'cleaning') continue
      if (!meta.keep || meta.endAt <= Date.now() || meta.kind === 'run') {
        await cleanVm(this.ctx, vm.id).then(
          () => cleaned++,
          (e) => logger().warn(`${vm.id}: cleaning a sandbox left by MCP server pid ${meta.ownerPid}: ${errorMessage(e)}`),
        )
        continue
      }
      this.writeMeta(vm.id, {...meta, ownerPid: process.pid})
      this.held.add(vm.id)
      this.arm(vm.id, meta.endAt)
      adopted++
    }
    return {cleaned, adopted}
  }

  /**
   * Stops in-flight commands and destroys this server's sandboxes (those kept with --keep stay).
   * With `handOff`, the ids are given to it to destroy instead (`agent mcp` hands them to a
   * detached `agent vm clean`, so that it can exit within the few seconds a client allows).
   */
  close(handOff?: (ids: string[]) => void): Promise<void> {
    return (this.closed ??= (async () => {
      this.lifetimes.clear()
      this.closing.abort(new AgentError('interrupted', 'the MCP server is shutting down'))
      await Promise.allSettled([...this.pending])
      // All at once: MCP clients give a server a few seconds after closing its stdin.
      const gone = [...this.held].filter((id) => !id.startsWith('pending-') && !this.readMeta(id)?.keep)
      if (handOff && gone.length > 0) {
        try {
          handOff(gone)
          for (const id of gone) this.held.delete(id)
          return
        } catch (err) {
          logger().warn(`handing sandboxes over for cleaning failed, cleaning them here: ${errorMessage(err)}`)
        }
      }
      await Promise.all(
        gone.map((id) =>
          cleanVm(this.ctx, id).then(
            () => this.held.delete(id),
            (e) => logger().warn(`${id}: cleaning at exit: ${errorMessage(e)}`),
          ),
        ),
      )
    })())
  }
}
