/**
 * What an OCI VM uses now (`vm inspect`), read where it happens: the sandbox's host cgroups
 * (cgroupsPath in oci-spec.ts: /sys/fs/cgroup/<controller>/agent/<id> on cgroup v1,
 * /sys/fs/cgroup/agent/<id> on v2) and the VM's bounded disk. Each counter that cannot be read is
 * named in `unknown` with the reason, never guessed.
 */
import {existsSync, readFileSync, statfsSync} from 'node:fs'
import {join} from 'node:path'
import {errorMessage} from '../errors.js'
import {diskLayout, isMounted} from './disk.js'
import type {VmUsage} from './launcher.js'
import type {ContainerRow} from './oci-state.js'
import type {RunResult} from '../system/index.js'
import {lastLines} from '../system/index.js'
import {cgroupsPath} from './oci-spec.js'

export interface UsageRoots {
  /** /sys/fs/cgroup */
  cgroupRoot: string
}

const DEFAULT_ROOTS: UsageRoots = {cgroupRoot: '/sys/fs/cgroup'}

/** cgroup v1 "no limit" is a page-rounded LONG_MAX. */
const V1_UNLIMITED = 2n ** 62n

function readNumber(path: string): number {
  const text = readFileSync(path, 'utf8').trim()
  if (text === 'max') return Number.POSITIVE_INFINITY
  const n = Number(text)
  if (!Number.isFinite(n)) throw new Error(`${path}: not a number: ${JSON.stringify(text.slice(0, 40))}`)
  return n
}

/** The cgroup counters of a running sandbox; `unknown` names each that could not be read. */
export function cgroupUsage(id: string, running: boolean, roots: UsageRoots = DEFAULT_ROOTS): VmUsage {
  const u: VmUsage = {unknown: {}}
  const rel = cgroupsPath(id)
  const v2 = existsSync(join(roots.cgroupRoot, 'cgroup.controllers'))
  const read = (field: keyof Omit<VmUsage, 'unknown' | 'startedAt'>, path: string, convert: (n: number) => number | undefined = (n) => n) => {
    if (!running) {
      u.unknown[field] = 'the VM is not running'
      return
    }
    try {
      const v = convert(readNumber(path))
      if (v !== undefined) u[field] = v
    } catch (err) {
      u.unknown[field] = `cannot read ${path}: ${errorMessage(err)}`
    }
  }
  if (v2) {
    const dir = join(roots.cgroupRoot, rel)
    read('memoryBytes', join(dir, 'memory.current'))
    read('memoryPeakBytes', join(dir, 'memory.peak'))
    read('memoryLimitBytes', join(dir, 'memory.max'), (n) => (Number.isFinite(n) ? n : undefined))
    read('pids', join(dir, 'pids.current'))
    if (running) {
      const stat = join(dir, 'cpu.stat')
      try {
        const usec = /^usage_usec (\d+)/m.exec(readFileSync(stat, 'utf8'))?.[1]
        if (usec === undefined) throw new Error('no usage_usec line')
        u.cpuSeconds = Number(usec) / 1e6
      } catch (err) {
        u.unknown.cpuSeconds = `cannot read ${stat}: ${errorMessage(err)}`
      }
    } else u.unknown.cpuSeconds = 'the VM is not running'
  } else {
    const c = (controller: string, file: string) => join(roots.cgroupRoot, controller, rel, file)
    read('memoryBytes', c('memory', 'memory.usage_in_bytes'))
    read('memoryPeakBytes', c('memory', 'memory.max_usage_in_bytes'))
    read('memoryLimitBytes', c('memory', 'memory.limit_in_bytes'), (n) => (BigInt(Math.trunc(n)) >= V1_UNLIMITED ? undefined : n))
    read('cpuSeconds', c('cpuacct', 'cpuacct.usage'), (ns) => ns / 1e9)
    read('pids', c('pids', 'pids.current'))
  }
  return u
}

/** Used and total bytes of the VM's --disk, when it is mounted (it stays mounted while stopped). */
export function diskUsage(vmDir: string, u: VmUsage): void {
  const d = diskLayout(vmDir)
  if (!isMounted(d.mount)) {
    u.unknown.diskUsedBytes = `the disk is not mounted (${d.mount}); it is mounted again when the VM starts`
    return
  }
  try {
    const s = statfsSync(d.mount)
    u.diskTotalBytes = s.blocks * s.bsize
    u.diskUsedBytes = (s.blocks - s.bfree) * s.bsize
  } catch (err) {
    u.unknown.diskUsedBytes = `cannot statfs ${d.mount}: ${errorMessage(err)}`
  }
}

/**
 * When a process started, from /proc/<pid>/stat's start time (clock ticks after boot, USER_HZ =
 * 100 on Linux) and /proc/stat's boot time: for runtimes whose `list` gives no creation time.
 */
export function processStartedAt(pid: number, proc = '/proc'): string | undefined {
  try {
    const stat = readFileSync(join(proc, String(pid), 'stat'), 'utf8')
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const ticks = Number(fields[19])
    const btime = Number(/^btime (\d+)/m.exec(readFileSync(join(proc, 'stat'), 'utf8'))?.[1])
    if (!Number.isFinite(ticks) || !Number.isFinite(btime)) return undefined
    return new Date((btime + ticks / 100) * 1000).toISOString()
  } catch {
    return undefined
  }
}

/** An OCI VM's usage: its row in the runtime's list (undefined: not listed), its cgroups and its disk. */
export function ociUsage(id: string, vmDir: string, bin: string, row: ContainerRow | undefined, list: RunResult): VmUsage {
  const running = row?.status === 'running' || row?.status === 'paused'
  const u = cgroupUsage(id, running)
  // runc's list says when; runsc's does not, so its sandbox process says.
  const startedAt = row?.created ? new Date(row.created).toISOString() : row?.pid ? processStartedAt(row.pid) : undefined
  if (running && startedAt) u.startedAt = startedAt
  else if (running) u.unknown.startedAt = `${bin} list gives no creation time or pid`
  else u.unknown.startedAt = list.exitCode === 0 ? 'the VM is not running' : `${bin} list failed: ${lastLines(list.all, 1)}`
  diskUsage(vmDir, u)
  return u
}
