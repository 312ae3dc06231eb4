import type {VmRecord} from './vm-record.js'
import type {Row, SqlValue} from './sqlite.js'

/**
 * The `vm` table's columns (created by state/migrations) and how each VmRecord field is stored.
 * The encodings are the ones TypeORM used for this table, so rows written by either read the same:
 * booleans 1/0, dates as UTC 'YYYY-MM-DD HH:MM:SS.SSS', lists as JSON text.
 */
type Kind = 'plain' | 'bool' | 'date' | 'json'
export const VM_COLUMNS: ReadonlyArray<readonly [keyof VmRecord, string, Kind]> = [
  ['id', 'id', 'plain'],
  ['name', 'name', 'plain'],
  ['language', 'language', 'plain'],
  ['version', 'version', 'plain'],
  ['plugin', 'plugin', 'plain'],
  ['image', 'image', 'plain'],
  ['imageSource', 'image_source', 'plain'],
  ['launcher', 'launcher', 'plain'],
  ['cpus', 'cpus', 'plain'],
  ['memoryMib', 'memory_mib', 'plain'],
  ['diskMib', 'disk_mib', 'plain'],
  ['pids', 'pids', 'plain'],
  ['network', 'network', 'plain'],
  ['egressAllow', 'egress_allow', 'json'],
  ['allowHosts', 'allow_hosts', 'json'],
  ['persist', 'persist', 'bool'],
  ['persistMib', 'persist_mib', 'plain'],
  ['status', 'status', 'plain'],
  ['containerRef', 'container_ref', 'plain'],
  ['rootfsRef', 'rootfs_ref', 'plain'],
  ['bundleRef', 'bundle_ref', 'plain'],
  ['ownerPid', 'owner_pid', 'plain'],
  ['createdAt', 'created_at', 'date'],
  ['updatedAt', 'updated_at', 'date'],
  ['lastError', 'last_error', 'plain'],
]
const BY_FIELD = new Map(VM_COLUMNS.map(([f, c, k]) => [f as string, [c, k] as const]))

/** The column a field is stored in, and its value as stored; unknown fields throw (a typo must not pass silently). */
export function toColumn(field: string, value: unknown): [string, SqlValue] {
  const col = BY_FIELD.get(field)
  if (!col) throw new Error(`vm table: no column for field ${field}`)
  const [name, kind] = col
  if (value === null || value === undefined) return [name, null]
  switch (kind) {
    case 'bool':
      return [name, value === true ? 1 : 0]
    case 'date':
      return [name, (value instanceof Date ? value : new Date(value as string)).toISOString().replace('T', ' ').replace('Z', '')]
    case 'json':
      return [name, JSON.stringify(value)]
    default:
      return [name, value as SqlValue]
  }
}

/** A VmRecord from a row as SQLite returns it. */
export function fromRow(row: Row): VmRecord {
  const vm: Record<string, unknown> = {}
  for (const [field, name, kind] of VM_COLUMNS) {
    const v = row[name]
    if (v === null || v === undefined) vm[field] = null
    else if (kind === 'bool') vm[field] = Boolean(v)
    else if (kind === 'json') vm[field] = typeof v === 'string' ? JSON.parse(v) : v
    else if (kind === 'date') vm[field] = parseDate(v)
    else vm[field] = v
  }
  return vm as unknown as VmRecord
}

/** SQLite keeps no time zone: a bare 'YYYY-MM-DD HH:MM[:SS[.SSS]]' is UTC, as it was written. */
function parseDate(v: unknown): Date {
  if (typeof v !== 'string') return new Date(v as number)
  let s = /^\d{4}-\d\d-\d\d \d\d:\d\d/.test(v) ? v.replace(' ', 'T') : v
  if (/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d\d\d)?)?$/.test(s)) s += 'Z'
  return new Date(s)
}
