/**
 * What an MCP server allows: defaults and maxima for every limit a tool call may ask for.
 * `agent mcp` takes them as flags; `agent serve` (MCP at /mcp) reads the "mcp" object of
 * <state>/config.json; flags win over the file, the file over the defaults.
 */
import {join} from 'node:path'
import {AgentError, configSection} from '../floor.js'

export interface McpOptions {
  /** Tool calls may ask for network allow_all; without this every sandbox has network none. */
  allowNetwork: boolean
  /** Leave this server's sandboxes running when it exits (their lifetimes still apply). */
  keep: boolean
  /** Lifetime of a sandbox created without ttl_seconds, and the longest one may ask for. */
  ttlSec: number
  maxTtlSec: number
  /** Command timeout when a call gives none, and the longest one may ask for. */
  timeoutSec: number
  maxTimeoutSec: number
  memoryMib: number
  maxMemoryMib: number
  cpus: number
  maxCpus: number
  /** Disk and processes of every MCP sandbox (not asked for by tools). */
  diskMib: number
  pids: number
  /** Sandboxes (including run_code's one-shot VMs) this server holds at once. */
  maxSandboxes: number
  /** Output returned to the model, per stream (stdout, stderr). */
  maxOutputBytes: number
  /** Largest file write_file takes or read_file returns. */
  maxFileBytes: number
}

export const DEFAULT_MCP_OPTIONS: McpOptions = {
  allowNetwork: false,
  keep: false,
  ttlSec: 15 * 60,
  maxTtlSec: 24 * 60 * 60,
  timeoutSec: 60,
  maxTimeoutSec: 15 * 60,
  memoryMib: 512,
  maxMemoryMib: 2048,
  cpus: 1,
  maxCpus: 2,
  diskMib: 1024,
  pids: 256,
  maxSandboxes: 8,
  maxOutputBytes: 64 * 1024,
  maxFileBytes: 10 * 1024 * 1024,
}

/** The flag (and config.json key) that sets each option, for messages. */
export const OPTION_FLAGS: Record<keyof McpOptions, string> = {
  allowNetwork: '--allow-network',
  keep: '--keep',
  ttlSec: '--ttl',
  maxTtlSec: '--max-ttl',
  timeoutSec: '--timeout',
  maxTimeoutSec: '--max-timeout',
  memoryMib: '--memory',
  maxMemoryMib: '--max-memory',
  cpus: '--cpus',
  maxCpus: '--max-cpus',
  diskMib: '--disk',
  pids: '--pids',
  maxSandboxes: '--max-sandboxes',
  maxOutputBytes: '--max-output',
  maxFileBytes: '--max-file-size',
}

/** Checks a whole set of options (defaults not above maxima, all positive); returns it. */
export function checkMcpOptions(o: McpOptions): McpOptions {
  const bad = (msg: string) => new AgentError('usage', msg)
  for (const [k, v] of Object.entries(o) as [keyof McpOptions, unknown][]) {
    if (k === 'allowNetwork' || k === 'keep') {
      if (typeof v !== 'boolean') throw bad(`${OPTION_FLAGS[k]} must be true or false`)
      continue
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw bad(`${OPTION_FLAGS[k]} must be a positive number (got ${JSON.stringify(v)})`)
    if (k !== 'cpus' && k !== 'maxCpus' && !Number.isInteger(v)) throw bad(`${OPTION_FLAGS[k]} must be a whole number (got ${v})`)
  }
  const pairs: [keyof McpOptions, keyof McpOptions][] = [
    ['ttlSec', 'maxTtlSec'],
    ['timeoutSec', 'maxTimeoutSec'],
    ['memoryMib', 'maxMemoryMib'],
    ['cpus', 'maxCpus'],
  ]
  for (const [d, m] of pairs) {
    if ((o[d] as number) > (o[m] as number)) throw bad(`${OPTION_FLAGS[d]} ${o[d]} is above ${OPTION_FLAGS[m]} ${o[m]}`)
  }
  return o
}

/** The "mcp" object of <state>/config.json, as option overrides (keys as in McpOptions). */
export function configMcpOptions(root: string): Partial<McpOptions> {
  const p = join(root, 'config.json')
  const out: Partial<McpOptions> = {}
  for (const [k, v] of Object.entries(configSection(root, 'mcp', 'an object such as {"allowNetwork": true, "ttlSec": 600}'))) {
    if (!(k in DEFAULT_MCP_OPTIONS)) throw new AgentError('usage', `unknown key "mcp.${k}" in ${p}`, {hint: `known keys: ${Object.keys(DEFAULT_MCP_OPTIONS).join(', ')}`})
    ;(out as Record<string, unknown>)[k] = v
  }
  return out
}

/** Defaults, then config.json's "mcp", then the given overrides (undefined ones ignored). */
export function resolveMcpOptions(root: string, overrides: Partial<McpOptions> = {}): McpOptions {
  const given = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)) as Partial<McpOptions>
  return checkMcpOptions({...DEFAULT_MCP_OPTIONS, ...configMcpOptions(root), ...given})
}
