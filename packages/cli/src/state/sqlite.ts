import {mkdirSync} from 'node:fs'
import {dirname} from 'node:path'
import sqlite3 from 'sqlite3'

export type SqlValue = string | number | null
export type Row = Record<string, unknown>

/**
 * One sqlite3 connection, promised. The state database is one small table: node-sqlite3 alone
 * loads in a few ms where TypeORM took hundreds on every command (bench/REPORT.md).
 */
export class Sqlite {
  private constructor(private readonly db: sqlite3.Database) {}

  /** Opens (creating if needed) `file` with the settings every agent process uses. */
  static async open(file: string, busyTimeoutMs: number): Promise<Sqlite> {
    mkdirSync(dirname(file), {recursive: true})
    const db = await new Promise<sqlite3.Database>((ok, fail) => {
      const d = new sqlite3.Database(file, (err) => (err ? fail(err) : ok(d)))
    })
    const s = new Sqlite(db)
    try {
      // busy_timeout first, so that switching a new file to WAL waits instead of failing.
      await s.run(`PRAGMA busy_timeout = ${busyTimeoutMs}`)
      await s.run('PRAGMA journal_mode = WAL')
      await s.run('PRAGMA synchronous = NORMAL')
      await s.run('PRAGMA foreign_keys = ON')
    } catch (err) {
      await s.close().catch(() => undefined)
      throw err
    }
    return s
  }

  all<T = Row>(sql: string, params: SqlValue[] = []): Promise<T[]> {
    return new Promise((ok, fail) => this.db.all(sql, params, (err, rows) => (err ? fail(err) : ok(rows as T[]))))
  }

  async get<T = Row>(sql: string, params: SqlValue[] = []): Promise<T | undefined> {
    return (await this.all<T>(sql, params))[0]
  }

  /** Runs one statement; resolves with the number of rows it changed. */
  run(sql: string, params: SqlValue[] = []): Promise<number> {
    return new Promise((ok, fail) =>
      this.db.run(sql, params, function (this: sqlite3.RunResult, err: Error | null) {
        if (err) fail(err)
        else ok(this.changes)
      }),
    )
  }

  close(): Promise<void> {
    return new Promise((ok, fail) => this.db.close((err) => (err ? fail(err) : ok())))
  }
}
