import {cpus, totalmem} from 'node:os'
import {usageError} from '../errors.js'

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/

/** VM ids and names: letters, digits, '.', '_' and '-' only, so nothing they reach can be misread. */
export function checkVmRef(ref: string, what = 'VM id or name'): string {
  if (typeof ref !== 'string' || !NAME_RE.test(ref)) {
    throw usageError(
      `invalid ${what} ${JSON.stringify(ref)}: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    )
  }
  return ref
}

export function checkName(name: string): string {
  checkVmRef(name, 'VM name')
  if (/^[a-z][a-z0-9-]*-[0-9a-f]{8}$/.test(name)) throw usageError(`VM name "${name}" looks like a VM id; choose another name`)
  return name
}

export interface Limits {
  cpus: number
  memoryMib: number
  diskMib: number
  pids: number
}

/** Refuses zero, negative and absurd limits with a message that gives the allowed range. */
/** `remote`: the sandbox runs elsewhere (a cluster), so this host's size bounds nothing; the cluster refuses what it cannot place. */
export function checkLimits(l: Limits, remote = false): Limits {
  const hostCpus = remote ? 1024 : cpus().length
  const hostMemMib = remote ? 16 * 1024 * 1024 : Math.floor(totalmem() / 1024 / 1024)
  const where = remote ? '' : ' on this host'
  const range = (what: string, v: number, min: number, max: number, unit = '') => {
    if (!Number.isFinite(v) || v < min || v > max)
      throw usageError(`${what} must be between ${min}${unit} and ${max}${unit}${where} (got ${v}${unit})`)
  }
  range('--cpu', l.cpus, 0.1, hostCpus)
  range('--mem', l.memoryMib, 32, hostMemMib, ' MiB')
  range('--disk', l.diskMib, 32, 1024 * 1024, ' MiB')
  range('--pids', l.pids, 8, 65_536)
  if (!Number.isInteger(l.memoryMib) || !Number.isInteger(l.diskMib) || !Number.isInteger(l.pids))
    throw usageError('--mem, --disk and --pids take whole numbers')
  return l
}

/** `K=V` pairs from repeated --env flags. */
export function parseEnv(pairs: readonly string[] = []): Record<string, string> {
  const env: Record<string, string> = {}
  for (const p of pairs) {
    const i = p.indexOf('=')
    const k = i > 0 ? p.slice(0, i) : ''
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) || p.includes('\0')) throw usageError(`--env takes NAME=VALUE (got ${JSON.stringify(p)})`)
    env[k] = p.slice(i + 1)
  }
  return env
}
