import {DataSource} from 'typeorm'
import {migrations} from './migrations/index.js'

/**
 * Brings the state database up to date with TypeORM's migration runner (and its `migrations`
 * table). Loaded only when a migration is pending: a new state dir, or one from an older agent.
 */
export async function runMigrations(file: string, busyTimeoutMs: number): Promise<void> {
  const ds = new DataSource({type: 'sqlite', database: file, busyTimeout: busyTimeoutMs, entities: [], migrations, migrationsRun: false, synchronize: false, logging: false})
  await ds.initialize()
  try {
    // Several processes may start on a new file at once: take the write lock, then look again.
    await ds.query('BEGIN IMMEDIATE')
    try {
      await ds.runMigrations({transaction: 'none'})
      await ds.query('COMMIT')
    } catch (err) {
      await ds.query('ROLLBACK').catch(() => undefined)
      throw err
    }
  } finally {
    await ds.destroy()
  }
}
