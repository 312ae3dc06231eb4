import {statfsSync} from 'node:fs'
import {dirname} from 'node:path'
import {DataSource, In, type EntityManager} from 'typeorm'
import {AgentError, conflict, notFound, unavailable, errorMessage} from '../errors.js'
import {VmEntity} from './vm.entity.js'
import {migrations} from './migrations/index.js'
import type {VmRecord, VmStatus} from './vm-record.js'

const BUSY_TIMEOUT_MS = 30_000

export interface ListOptions {
  /** Only this status. */
  status?: VmStatus
  /** Every status; otherwise only running and creating VMs, as `docker ps` does. */
  all?: boolean
}

/**
 * The one way commands reach the database. Every read-then-write runs inside
 * `BEGIN IMMEDIATE` (see `write`), so concurrent agent processes queue on the
 * busy timeout instead of failing with SQLITE_BUSY.
 */
export class VmRepository {
  // TypeORM's sqlite driver has a single connection: transactions in one process must not overlap.
  private queue: Promise<unknown> = Promise.resolve()

  constructor(private readonly ds: DataSource, private readonly file = '') {}

  /** Runs fn in a write transaction taken up front (BEGIN IMMEDIATE), serialised within this process. */
  write<T>(fn: (m: EntityManager) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      try {
        await this.ds.query('BEGIN IMMEDIATE')
      } catch (err) {
        throw dbError(this.file, err) ?? err
      }
      try {
        const result = await fn(this.ds.manager)
        await this.ds.query('COMMIT')
        return result
      } catch (err) {
        await this.ds.query('ROLLBACK').catch(() => undefined)
        throw dbError(this.file, err) ?? err
      }
    }
    const p = this.queue.then(run, run)
    this.queue = p.catch(() => undefined)
    return p
  }

  /** Reads wait for any write this process has queued, so they see its result. */
  private read<T>(fn: (m: EntityManager) => Promise<T>): Promise<T> {
    const p = this.queue.then(() => fn(this.ds.manager))
    this.queue = p.catch(() => undefined)
    return p
  }

  async insert(vm: VmRecord): Promise<VmRecord> {
    return this.write(async (m) => {
      if (vm.name) {
        const clash = await m.findOne(VmEntity, {where: {name: vm.name}})
        if (clash) throw conflict(`the name "${vm.name}" is already used by VM ${clash.id}`, 'choose another --name, or clean that VM first')
      }
      if (await m.findOne(VmEntity, {where: {id: vm.id}})) throw conflict(`a VM with id ${vm.id} already exists`)
      await m.insert(VmEntity, vm)
      return vm
    })
  }

  async get(id: string): Promise<VmRecord | null> {
    return this.read((m) => m.findOne(VmEntity, {where: {id}}))
  }

  /** Finds a VM by id or by name, or throws "not found" with the reference in the message. */
  async resolve(ref: string): Promise<VmRecord> {
    const vm = await this.read(async (m) => (await m.findOne(VmEntity, {where: {id: ref}})) ?? m.findOne(VmEntity, {where: {name: ref}}))
    if (!vm) throw notFound('VM', ref, 'run `agent vm list --all` to see VMs')
    return vm
  }

  async list(opts: ListOptions = {}): Promise<VmRecord[]> {
    const where = opts.status ? {status: opts.status} : opts.all ? {} : {status: In(['running', 'creating'])}
    return this.read((m) => m.find(VmEntity, {where, order: {createdAt: 'ASC', id: 'ASC'}}))
  }

  /** Updates fields of a VM; returns the new row. */
  async update(id: string, patch: Partial<Omit<VmRecord, 'id' | 'createdAt'>>): Promise<VmRecord> {
    return this.write(async (m) => {
      await m.update(VmEntity, {id}, {...patch, updatedAt: new Date()})
      const vm = await m.findOne(VmEntity, {where: {id}})
      if (!vm) throw notFound('VM', id)
      return vm
    })
  }

  /**
   * Moves a VM to `to` only if its status is one of `from`, atomically. This is how two agent
   * processes avoid, say, cleaning a VM while another is starting it.
   */
  async transition(id: string, from: readonly VmStatus[], to: VmStatus, patch: Partial<VmRecord> = {}): Promise<VmRecord> {
    return this.write(async (m) => {
      const vm = await m.findOne(VmEntity, {where: {id}})
      if (!vm) throw notFound('VM', id)
      if (!from.includes(vm.status)) {
        throw conflict(`VM ${id} is ${vm.status}${vm.ownerPid ? ` (agent pid ${vm.ownerPid})` : ''}, expected ${from.join(' or ')}`)
      }
      const next = {...vm, ...patch, status: to, updatedAt: new Date()}
      await m.update(VmEntity, {id}, {...patch, status: to, updatedAt: next.updatedAt})
      return next
    })
  }

  async delete(id: string): Promise<void> {
    await this.write((m) => m.delete(VmEntity, {id}))
  }

  async integrityCheck(): Promise<string> {
    const rows = (await this.ds.query('PRAGMA integrity_check')) as Array<{integrity_check: string}>
    return rows.map((r) => r.integrity_check).join('\n')
  }

  async close(): Promise<void> {
    await this.queue.catch(() => undefined)
    if (this.ds.isInitialized) await this.ds.destroy()
  }
}

/** Opens (creating and migrating if needed) the database at `file`. */
export async function openVmRepository(file: string): Promise<VmRepository> {
  const ds = new DataSource({
    type: 'sqlite',
    database: file,
    busyTimeout: BUSY_TIMEOUT_MS,
    entities: [VmEntity],
    migrations,
    migrationsRun: false,
    synchronize: false,
    logging: false,
  })
  try {
    await ds.initialize()
    // WAL after busy_timeout, so that switching the mode on a new file waits instead of failing.
    await ds.query('PRAGMA journal_mode = WAL')
    await ds.query('PRAGMA synchronous = NORMAL')
    await migrate(ds)
  } catch (err) {
    if (ds.isInitialized) await ds.destroy().catch(() => undefined)
    if (err instanceof AgentError) throw err
    throw dbError(file, err) ?? unavailable(`cannot open the state database ${file}: ${errorMessage(err)}`, 'check that the state dir is writable, or set AGENT_STATE_DIR', err)
  }
  return new VmRepository(ds, file)
}

async function migrate(ds: DataSource): Promise<void> {
  // Fast path without a write lock: every known migration is recorded.
  const applied = await ds
    .query(`SELECT COUNT(*) AS n FROM "migrations"`)
    .then((r: Array<{n: number}>) => r[0].n)
    .catch(() => -1)
  if (applied === migrations.length) return
  // Several processes may start on a new file at once: take the write lock, then look again.
  await ds.query('BEGIN IMMEDIATE')
  try {
    await ds.runMigrations({transaction: 'none'})
    await ds.query('COMMIT')
  } catch (err) {
    await ds.query('ROLLBACK').catch(() => undefined)
    throw err
  }
}

/**
 * The state database's own failures in words: locked past the busy timeout by another process, a
 * full file system, a file that is not (or no longer) an SQLite database. Undefined for the rest.
 */
export function dbError(file: string, err: unknown): AgentError | undefined {
  if (err instanceof AgentError) return undefined
  const msg = errorMessage(err)
  if (/SQLITE_BUSY|database is locked/.test(msg)) {
    return unavailable(`the state database ${file} stayed locked by another process for ${BUSY_TIMEOUT_MS / 1000} s; nothing was changed`, `find the process holding it (fuser ${file}) and end it, then try again`, err)
  }
  if (/SQLITE_FULL|database or disk is full|ENOSPC/.test(msg) || (/SQLITE_IOERR/.test(msg) && noSpaceLeft(file))) {
    return unavailable(`the file system holding the state database ${file} is full; nothing was changed`, 'free space there (or set AGENT_STATE_DIR elsewhere) and try again', err)
  }
  if (/SQLITE_NOTADB|SQLITE_CORRUPT|file is not a database|malformed/.test(msg)) {
    return unavailable(`the state database ${file} is damaged (${msg})`, `move it away (mv ${file} ${file}.bad): agent makes a new, empty one; VMs it recorded are then leftovers that \`agent vm clean --all\` removes`, err)
  }
  return undefined
}

function noSpaceLeft(file: string): boolean {
  try {
    const st = statfsSync(dirname(file))
    return st.bavail === 0 || st.ffree === 0
  } catch {
    return false
  }
}
