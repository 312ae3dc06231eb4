import {statfsSync} from 'node:fs'
import {dirname} from 'node:path'
import {AgentError, conflict, notFound, unavailable, errorMessage} from '../errors.js'
import {Sqlite, type Row, type SqlValue} from './sqlite.js'
import {fromRow, toColumn, VM_COLUMNS} from './vm-columns.js'
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
  // One connection per process: transactions in one process must not overlap.
  private queue: Promise<unknown> = Promise.resolve()

  constructor(private readonly db: Sqlite, private readonly file = '') {}

  /** Runs fn in a write transaction taken up front (BEGIN IMMEDIATE), serialised within this process. */
  write<T>(fn: (db: Sqlite) => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      try {
        await this.db.run('BEGIN IMMEDIATE')
      } catch (err) {
        throw dbError(this.file, err) ?? err
      }
      try {
        const result = await fn(this.db)
        await this.db.run('COMMIT')
        return result
      } catch (err) {
        await this.db.run('ROLLBACK').catch(() => undefined)
        throw dbError(this.file, err) ?? err
      }
    }
    const p = this.queue.then(run, run)
    this.queue = p.catch(() => undefined)
    return p
  }

  /** Reads wait for any write this process has queued, so they see its result. */
  private read<T>(fn: (db: Sqlite) => Promise<T>): Promise<T> {
    const p = this.queue.then(() => fn(this.db))
    this.queue = p.catch(() => undefined)
    return p
  }

  async insert(vm: VmRecord): Promise<VmRecord> {
    return this.write(async (db) => {
      if (vm.name) {
        const clash = await findBy(db, 'name', vm.name)
        if (clash) throw conflict(`the name "${vm.name}" is already used by VM ${clash.id}`, 'choose another --name, or clean that VM first')
      }
      if (await findBy(db, 'id', vm.id)) throw conflict(`a VM with id ${vm.id} already exists`)
      const cols = VM_COLUMNS.map(([field]) => toColumn(field, vm[field]))
      await db.run(`INSERT INTO "vm" (${cols.map(([c]) => `"${c}"`).join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`, cols.map(([, v]) => v))
      return vm
    })
  }

  async get(id: string): Promise<VmRecord | null> {
    return this.read((db) => findBy(db, 'id', id))
  }

  /** Finds a VM by id or by name, or throws "not found" with the reference in the message. */
  async resolve(ref: string): Promise<VmRecord> {
    const vm = await this.read(async (db) => (await findBy(db, 'id', ref)) ?? findBy(db, 'name', ref))
    if (!vm) throw notFound('VM', ref, 'run `agent vm list --all` to see VMs')
    return vm
  }

  async list(opts: ListOptions = {}): Promise<VmRecord[]> {
    const [where, params]: [string, SqlValue[]] = opts.status ? ['WHERE "status" = ?', [opts.status]] : opts.all ? ['', []] : ['WHERE "status" IN (?, ?)', ['running', 'creating']]
    return this.read(async (db) => (await db.all(`SELECT * FROM "vm" ${where} ORDER BY "created_at" ASC, "id" ASC`, params)).map(fromRow))
  }

  /** Updates fields of a VM; returns the new row. */
  async update(id: string, patch: Partial<Omit<VmRecord, 'id' | 'createdAt'>>): Promise<VmRecord> {
    return this.write(async (db) => {
      await setFields(db, id, {...patch, updatedAt: new Date()})
      const vm = await findBy(db, 'id', id)
      if (!vm) throw notFound('VM', id)
      return vm
    })
  }

  /**
   * Moves a VM to `to` only if its status is one of `from`, atomically. This is how two agent
   * processes avoid, say, cleaning a VM while another is starting it.
   */
  async transition(id: string, from: readonly VmStatus[], to: VmStatus, patch: Partial<VmRecord> = {}): Promise<VmRecord> {
    return this.write(async (db) => {
      const vm = await findBy(db, 'id', id)
      if (!vm) throw notFound('VM', id)
      if (!from.includes(vm.status)) {
        throw conflict(`VM ${id} is ${vm.status}${vm.ownerPid ? ` (agent pid ${vm.ownerPid})` : ''}, expected ${from.join(' or ')}`)
      }
      const next = {...vm, ...patch, status: to, updatedAt: new Date()}
      await setFields(db, id, {...patch, status: to, updatedAt: next.updatedAt})
      return next
    })
  }

  async delete(id: string): Promise<void> {
    await this.write((db) => db.run('DELETE FROM "vm" WHERE "id" = ?', [id]))
  }

  async integrityCheck(): Promise<string> {
    const rows = await this.db.all<{integrity_check: string}>('PRAGMA integrity_check')
    return rows.map((r) => r.integrity_check).join('\n')
  }

  async close(): Promise<void> {
    await this.queue.catch(() => undefined)
    await this.db.close()
  }
}

async function findBy(db: Sqlite, column: 'id' | 'name', value: string): Promise<VmRecord | null> {
  const row = await db.get<Row>(`SELECT * FROM "vm" WHERE "${column}" = ? LIMIT 1`, [value])
  return row ? fromRow(row) : null
}

/** UPDATE of the given fields; undefined ones are left as they are. */
async function setFields(db: Sqlite, id: string, patch: Partial<VmRecord>): Promise<void> {
  const cols = Object.entries(patch)
    .filter(([field, v]) => v !== undefined && field !== 'id')
    .map(([field, v]) => toColumn(field, v))
  await db.run(`UPDATE "vm" SET ${cols.map(([c]) => `"${c}" = ?`).join(', ')} WHERE "id" = ?`, [...cols.map(([, v]) => v), id])
}

/** Opens (creating and migrating if needed) the database at `file`. */
export async function openVmRepository(file: string): Promise<VmRepository> {
  let db: Sqlite | undefined
  try {
    db = await Sqlite.open(file, BUSY_TIMEOUT_MS)
    await migrate(db, file)
  } catch (err) {
    await db?.close().catch(() => undefined)
    if (err instanceof AgentError) throw err
    throw dbError(file, err) ?? unavailable(`cannot open the state database ${file}: ${errorMessage(err)}`, 'check that the state dir is writable, or set AGENT_STATE_DIR', err)
  }
  return new VmRepository(db, file)
}

async function migrate(db: Sqlite, file: string): Promise<void> {
  // Fast path without a write lock, and without TypeORM: every known migration is recorded.
  const applied = await db
    .get<{n: number}>('SELECT COUNT(*) AS n FROM "migrations"')
    .then((r) => r?.n ?? 0)
    .catch(() => -1)
  if (applied === migrations.length) return
  // A new or older file: TypeORM's migration runner (loaded only now) brings it up to date.
  const {runMigrations} = await import('./migrate.js')
  await runMigrations(file, BUSY_TIMEOUT_MS)
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
