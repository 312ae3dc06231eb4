/**
 * krunvm's own state: the TOML file where it keeps its VM definitions. Read directly (no krunvm
 * call, no KVM needed), with a reader just big enough for what krunvm 0.2.6 writes.
 */
import {readFileSync} from 'node:fs'
import {homedir} from 'node:os'
import {join} from 'node:path'
import {errorMessage, unavailable} from '../../errors.js'

/** One VM as krunvm defines it. */
export interface KrunvmVm {
  /** Host dir → guest dir. */
  mappedVolumes: Record<string, string>
  /** buildah's container for the VM's root filesystem. */
  container?: string
}

/**
 * krunvm's TOML files: $XDG_CONFIG_HOME/krunvm/krunvm.toml (agent points XDG_CONFIG_HOME at its
 * own dir); on macOS krunvm may use ~/Library/Preferences whatever XDG_CONFIG_HOME says.
 */
export function krunvmTomlFiles(configHome: string, platform: NodeJS.Platform, env: NodeJS.ProcessEnv): string[] {
  const files = [join(configHome, 'krunvm', 'krunvm.toml')]
  if (platform === 'darwin') files.push(join(env.HOME ?? homedir(), 'Library', 'Preferences', 'rs.krunvm', 'krunvm.toml'))
  return files
}

/** The VMs defined in any of `files` (missing files define none; the first definition wins). */
export function readDefinedVms(files: readonly string[]): Map<string, KrunvmVm> {
  const all = new Map<string, KrunvmVm>()
  for (const f of files) {
    let text: string
    try {
      text = readFileSync(f, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue
      throw unavailable(`cannot read krunvm's state ${f}: ${errorMessage(err)}`)
    }
    for (const [k, v] of parseKrunvmToml(text)) if (!all.has(k)) all.set(k, v)
  }
  return all
}

/** Names of the VMs in a krunvm TOML (`[vmconfig_map.NAME]` tables) with their mapped volumes. */
export function parseKrunvmToml(text: string): Map<string, KrunvmVm> {
  const vms = new Map<string, KrunvmVm>()
  let current: {vm: string; sub?: string} | undefined
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    if (line.startsWith('[')) {
      const keys = tomlKeys(line.slice(line.startsWith('[[') ? 2 : 1, line.lastIndexOf(']')).replace(/\]$/, ''))
      current = undefined
      if (keys[0] === 'vmconfig_map' && keys.length >= 2) {
        if (!vms.has(keys[1])) vms.set(keys[1], {mappedVolumes: {}})
        current = {vm: keys[1], sub: keys[2]}
      }
      continue
    }
    if (!current) continue
    const eq = keyEnd(line)
    if (eq < 0) continue
    const key = tomlKeys(line.slice(0, eq))[0]
    const value = tomlString(line.slice(eq + 1).trim())
    const entry = vms.get(current.vm)!
    if (current.sub === 'mapped_volumes' && value !== undefined) entry.mappedVolumes[key] = value
    else if (current.sub === undefined && key === 'container' && value !== undefined) entry.container = value
  }
  return vms
}

/** Index of the `=` that ends a key (quoted keys may hold `=`), or -1. */
function keyEnd(line: string): number {
  let i = 0
  let quote: string | undefined
  for (; i < line.length; i++) {
    const c = line[i]
    if (quote) {
      if (c === '\\' && quote === '"') i++
      else if (c === quote) quote = undefined
    } else if (c === '"' || c === "'") quote = c
    else if (c === '=') return i
  }
  return -1
}

/** The parts of a dotted key: bare, "basic" or 'literal'. */
function tomlKeys(s: string): string[] {
  const keys: string[] = []
  let i = 0
  while (i < s.length) {
    while (i < s.length && (s[i] === ' ' || s[i] === '.' || s[i] === '\t')) i++
    if (i >= s.length) break
    if (s[i] === '"' || s[i] === "'") {
      const q = s[i]
      let j = i + 1
      while (j < s.length && s[j] !== q) j += s[j] === '\\' && q === '"' ? 2 : 1
      keys.push(tomlString(s.slice(i, j + 1)) ?? '')
      i = j + 1
    } else {
      let j = i
      while (j < s.length && /[A-Za-z0-9_-]/.test(s[j])) j++
      if (j === i) break
      keys.push(s.slice(i, j))
      i = j
    }
  }
  return keys
}

/** A TOML string value (basic or literal); anything else is undefined. */
function tomlString(s: string): string | undefined {
  if (s.startsWith('"')) {
    const end = closingQuote(s)
    try {
      return JSON.parse(s.slice(0, end + 1)) as string
    } catch {
      return undefined
    }
  }
  if (s.startsWith("'")) return s.slice(1, s.indexOf("'", 1))
  return undefined
}

function closingQuote(s: string): number {
  for (let i = 1; i < s.length; i++) {
    if (s[i] === '\\') i++
    else if (s[i] === '"') return i
  }
  return s.length - 1
}
