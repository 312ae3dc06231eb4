/**
 * A VM record rebuilt from the annotation agent put on its pod and deny-all policy, for a state
 * dir whose database lost it. Cluster objects can be edited by anyone with access to the
 * namespace, so every field is checked; anything odd gives no record at all.
 */
import {NETWORK_MODES, vmRecord, type NetworkMode, type VmRecord, type VmStatus} from '../../state/vm-record.js'

const ID = /^[a-z][a-z0-9-]*-[0-9a-f]{8}$/
const MAX_TEXT = 300

const text = (v: unknown): string | undefined => (typeof v === 'string' && v.length <= MAX_TEXT && !/[\x00-\x1f\x7f]/.test(v) ? v : undefined)
const whole = (v: unknown, min: number, max: number): number | undefined => (Number.isInteger(v) && (v as number) >= min && (v as number) <= max ? (v as number) : undefined)
const list = (v: unknown): string[] | null | undefined => {
  if (v === null) return null
  if (!Array.isArray(v) || v.length > 64) return undefined
  const out = v.map(text)
  return out.every((s): s is string => s !== undefined) ? out : undefined
}

/** The record for `vmId` from the annotation text, with the status seen on the cluster; undefined when it does not check out. */
export function recordFromAnnotation(raw: unknown, vmId: string, status: VmStatus, containerRef: string | null): VmRecord | undefined {
  if (typeof raw !== 'string' || raw.length > 16 * 1024 || !ID.test(vmId)) return undefined
  let r: Record<string, unknown>
  try {
    r = JSON.parse(raw)
  } catch {
    return undefined
  }
  if (!r || typeof r !== 'object' || r.id !== vmId) return undefined
  const language = text(r.language)
  const image = text(r.image)
  const cpus = whole(r.cpus, 1, 1024)
  const memoryMib = whole(r.memoryMib, 1, 16 * 1024 * 1024)
  const diskMib = whole(r.diskMib, 1, 1024 * 1024 * 1024)
  const pids = whole(r.pids, 1, 4 * 1024 * 1024)
  const network = (NETWORK_MODES as readonly unknown[]).includes(r.network) ? (r.network as NetworkMode) : undefined
  const egressAllow = list(r.egressAllow)
  const allowHosts = list(r.allowHosts)
  const created = typeof r.createdAt === 'string' ? new Date(r.createdAt) : undefined
  if (!language || !image || !cpus || !memoryMib || !diskMib || !pids || !network || egressAllow === undefined || allowHosts === undefined) return undefined
  if (!vmId.startsWith(`${language}-`)) return undefined
  return vmRecord({
    id: vmId,
    name: r.name === null ? null : (text(r.name) ?? null),
    language,
    version: text(r.version) ?? null,
    plugin: text(r.plugin) ?? '',
    image,
    imageSource: text(r.imageSource) ?? '',
    launcher: 'kubernetes',
    cpus,
    memoryMib,
    diskMib,
    pids,
    network,
    egressAllow,
    allowHosts,
    persist: r.persist === true,
    persistMib: whole(r.persistMib, 1, 1024 * 1024) ?? null,
    status,
    containerRef,
    createdAt: created && !Number.isNaN(created.getTime()) ? created : new Date(),
    lastError: 'found on the cluster by its labels; the database had no row for it',
  })
}
