/**
 * `agent vm inspect`: a VM's record, limits, image and launcher, with what it uses now as its
 * launcher reads it (launcher.usage: cgroup counters and the disk for OCI launchers).
 */
import {errorMessage} from '../errors.js'
import type {VmUsage} from '../launchers/launcher.js'
import {launcher as launcherByName} from '../launchers/select.js'
import {networkLabel, type VmRecord} from '../state/vm-record.js'
import {launchContext, type ServiceContext} from './context.js'
import {listVms, resolveVm} from './vm-service.js'

export interface VmInspection {
  id: string
  name: string | null
  status: VmRecord['status']
  language: string
  version: string | null
  plugin: string
  image: string
  imageSource: string
  launcher: VmRecord['launcher']
  limits: {cpus: number; memoryMib: number; diskMib: number; pids: number}
  network: VmRecord['network']
  /** The egress policy: the allow list (network `allow`) and the --allow-host holes. */
  egressAllow: string[] | null
  allowHosts: string[] | null
  /** The host dir kept for /persist (holding its image, persist.img), or null. */
  persistDir: string | null
  /** Size of /persist's own file system in MiB; null when none, or an old VM's unbounded dir. */
  persistMib: number | null
  createdAt: string
  updatedAt: string
  /** Seconds since the running sandbox booted; null when not running or unknown. */
  uptimeSec: number | null
  lastError: string | null
  usage: VmUsage
  /** Where the launcher keeps it: its container, root filesystem and bundle. */
  refs: {containerRef: string | null; rootfsRef: string | null; bundleRef: string | null}
}

export async function inspectVm(ctx: ServiceContext, ref: string, now = new Date()): Promise<VmInspection> {
  const found = await resolveVm(ctx, ref)
  // The same reconciliation as `vm list`, so the status shown is the launcher's.
  const vm = (await listVms(ctx, {all: true})).find((v) => v.id === found.id) ?? found
  let usage: VmUsage
  try {
    const l = await launcherByName(vm.launcher)
    usage = await l.usage(vm, launchContext(ctx, vm, {}))
  } catch (err) {
    usage = {unknown: {all: `cannot ask the ${vm.launcher} launcher: ${errorMessage(err)}`}}
  }
  const persistDir = vm.persist ? ctx.paths.persistDir(vm.id) : null
  const started = usage.startedAt ? Date.parse(usage.startedAt) : NaN
  return {
    id: vm.id,
    name: vm.name,
    status: vm.status,
    language: vm.language,
    version: vm.version,
    plugin: vm.plugin,
    image: vm.image,
    imageSource: vm.imageSource,
    launcher: vm.launcher,
    limits: {cpus: vm.cpus, memoryMib: vm.memoryMib, diskMib: vm.diskMib, pids: vm.pids},
    network: vm.network,
    egressAllow: vm.egressAllow,
    allowHosts: vm.allowHosts,
    persistDir,
    persistMib: vm.persist ? vm.persistMib : null,
    createdAt: vm.createdAt.toISOString(),
    updatedAt: vm.updatedAt.toISOString(),
    uptimeSec: vm.status === 'running' && Number.isFinite(started) ? Math.max(0, Math.round((now.getTime() - started) / 1000)) : null,
    lastError: vm.lastError,
    usage,
    refs: {containerRef: vm.containerRef, rootfsRef: vm.rootfsRef, bundleRef: vm.bundleRef},
  }
}

const MiB = 1024 * 1024

/** `vm inspect` without --json: one `key: value` line each. */
export function renderInspection(i: VmInspection): string {
  const u = i.usage
  const mib = (b?: number) => (b === undefined ? undefined : `${(b / MiB).toFixed(1)} MiB`)
  const or = (v: string | number | undefined | null, field?: string) => (v === undefined || v === null ? (field && u.unknown[field] ? `unknown (${u.unknown[field]})` : '-') : String(v))
  const dur = (s: number | null) => (s === null ? '-' : s < 120 ? `${s}s` : s < 7200 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`)
  const rows: Array<[string, string]> = [
    ['id', i.id],
    ['name', or(i.name)],
    ['status', i.status],
    ['language', i.version ? `${i.language}@${i.version}` : i.language],
    ['plugin', i.plugin],
    ['image', `${i.image} (${i.imageSource})`],
    ['launcher', i.launcher],
    ['limits', `${i.limits.cpus} CPU, ${i.limits.memoryMib} MiB memory, ${i.limits.diskMib} MiB disk, ${i.limits.pids} pids`],
    ['network', networkLabel(i)],
    ['persist dir', i.persistDir ? `${i.persistDir} (${i.persistMib === null ? 'unbounded, made before /persist was bounded' : `${i.persistMib} MiB file system`})` : '-'],
    ['created', i.createdAt],
    ['uptime', i.uptimeSec === null ? or(undefined, 'startedAt') : dur(i.uptimeSec)],
    ['memory', u.memoryBytes === undefined ? or(undefined, 'memoryBytes') : `${mib(u.memoryBytes)} (peak ${or(mib(u.memoryPeakBytes))}, host limit ${or(mib(u.memoryLimitBytes))})`],
    ['cpu time', u.cpuSeconds === undefined ? or(undefined, 'cpuSeconds') : `${u.cpuSeconds.toFixed(2)}s`],
    ['pids', or(u.pids, 'pids')],
    ['disk used', u.diskUsedBytes === undefined ? or(undefined, 'diskUsedBytes') : `${mib(u.diskUsedBytes)} of ${or(mib(u.diskTotalBytes))}`],
    ['last error', or(i.lastError)],
  ]
  const w = Math.max(...rows.map(([k]) => k.length))
  return rows.map(([k, v]) => `${`${k}:`.padEnd(w + 2)}${v}`).join('\n')
}
