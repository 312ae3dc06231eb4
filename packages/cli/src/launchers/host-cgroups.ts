/** The host cgroups of a VM (cgroup v1: /sys/fs/cgroup/<controller>/agent/<id>). */
import {existsSync, readdirSync, readFileSync, rmdirSync} from 'node:fs'
import {join} from 'node:path'
import {errorMessage} from '../errors.js'
import {logger} from '../logging/logger.js'
import {cgroupsPath} from './oci-spec.js'

const CGROUP_ROOT = '/sys/fs/cgroup'

/** memory.oom_control's oom_kill counter of the VM's cgroup (0 when absent). */
export function oomKills(id: string): number {
  try {
    const text = readFileSync(join(CGROUP_ROOT, 'memory', cgroupsPath(id), 'memory.oom_control'), 'utf8')
    return Number(/^oom_kill (\d+)/m.exec(text)?.[1] ?? 0)
  } catch {
    return 0
  }
}

/** Removes /sys/fs/cgroup/<each controller>/agent/<id>; empty cgroups only, errors ignored. */
export function removeCgroups(id: string): void {
  let controllers: string[]
  try {
    controllers = readdirSync(CGROUP_ROOT)
  } catch {
    return
  }
  for (const c of controllers) {
    const dir = join(CGROUP_ROOT, c, cgroupsPath(id))
    if (!existsSync(dir)) continue
    try {
      rmdirSync(dir)
    } catch (err) {
      logger().debug(`rmdir ${dir}: ${errorMessage(err)}`)
    }
  }
}

/** Our own RLIMIT_NOFILE hard limit: the guest cannot get more without CAP_SYS_RESOURCE. */
export function nofileHardLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'))
    const hard = line?.trim().split(/\s+/)[4]
    if (hard === 'unlimited') return 65536
    const n = Number(hard)
    if (Number.isFinite(n) && n > 0) return Math.min(n, 65536)
  } catch {
    // not Linux?
  }
  return 1024
}
