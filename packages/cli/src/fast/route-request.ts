/**
 * Which command lines agent serve's route takes, parsed the same way on both ends (the client to
 * decide, the server again, as the bytes reach it from a socket). Deliberately narrow: anything
 * unusual returns undefined and the CLI takes its normal path, whose parser and errors are the
 * reference. Only node: builtins (nothing at all, in fact): the fast path loads it first.
 */

/** `vm exec` / `vm run` with one VM and a command, streamed (or --json). */
export interface RoutedExec {
  kind: 'exec'
  command: 'exec' | 'run'
  vm: string
  cmd?: string
  /** The command after `--`. */
  argv: string[]
  hello: boolean
  env: string[]
  workdir?: string
  /** As given; each command applies its own default (30 s). */
  timeout?: number
  json: boolean
}

/** `vm list`. */
export interface RoutedList {
  kind: 'list'
  all: boolean
  status?: string
  json: boolean
}

export type RoutedRequest = RoutedExec | RoutedList

/** VM_STATUSES of state/vm-record.ts (a unit test keeps the two equal). */
export const ROUTE_VM_STATUSES = ['creating', 'running', 'stopped', 'failed', 'missing', 'cleaning'] as const

type Spec = Record<string, {short?: string; value: boolean; multiple?: boolean}>

const EXEC: Spec = {
  vm: {short: 'v', value: true},
  cmd: {short: 'c', value: true},
  env: {short: 'e', value: true, multiple: true},
  workdir: {short: 'w', value: true},
  timeout: {value: true},
  json: {value: false},
  hello: {value: false},
}
const RUN: Spec = Object.fromEntries(Object.entries(EXEC).filter(([k]) => k !== 'hello'))
const LIST: Spec = {all: {short: 'a', value: false}, status: {value: true}, json: {value: false}}

/** Flags given (by long name) and the argv after the first `--`; undefined when anything is odd. */
function scan(tokens: readonly string[], spec: Spec): {flags: Map<string, string[]>; rest: string[]} | undefined {
  const flags = new Map<string, string[]>()
  const byShort = new Map(Object.entries(spec).flatMap(([name, s]) => (s.short ? [[s.short, name] as const] : [])))
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!
    if (t === '--') {
      const rest = tokens.slice(i + 1)
      // A second `--` is left to oclif's own reading.
      return rest.includes('--') ? undefined : {flags, rest: [...rest]}
    }
    let name: string | undefined
    let value: string | undefined
    if (/^--[a-z][a-z-]*=/.test(t)) {
      const eq = t.indexOf('=')
      name = t.slice(2, eq)
      value = t.slice(eq + 1)
      if (!spec[name]?.value) return undefined
    } else if (/^--[a-z][a-z-]*$/.test(t)) {
      name = t.slice(2)
    } else if (/^-[a-zA-Z]$/.test(t)) {
      name = byShort.get(t.slice(1))
    } else {
      // A positional, a bundle such as -it, or anything else: the normal path decides.
      return undefined
    }
    const s = name === undefined ? undefined : spec[name]
    if (!s || name === undefined) return undefined
    if (s.value && value === undefined) {
      value = tokens[++i]
      if (value === undefined) return undefined
    }
    // Values that look like flags, and empty ones, are oclif's to judge.
    if (s.value && (value === '' || value!.startsWith('-'))) return undefined
    const seen = flags.get(name) ?? []
    if (seen.length && !s.multiple) return undefined
    flags.set(name, [...seen, value ?? 'true'])
  }
  return {flags, rest: []}
}

function timeoutOf(s: string | undefined): number | null | undefined {
  if (s === undefined) return undefined
  if (!/^[1-9]\d{0,4}$/.test(s) || Number(s) > 86_400) return null
  return Number(s)
}

/**
 * The routed form of `agent <argv>`, or undefined: not routable (the CLI goes its normal way).
 * Only the plain, streamed single-VM cases: -i/-t, --all, several --vm, --file/--out,
 * --concurrency, log flags and help are not, nor anything the normal path would refuse.
 */
export function routableRequest(argv: readonly string[]): RoutedRequest | undefined {
  if (argv.length > 4096 || argv.some((a) => typeof a !== 'string' || a.length > 128 * 1024 || a.includes('\0'))) return undefined
  if (argv[0] !== 'vm') return undefined
  const command = argv[1]
  const tokens = argv.slice(2)
  if (command === 'list') {
    const p = scan(tokens, LIST)
    if (!p || p.rest.length) return undefined
    // scan stops at `--`; `vm list --` has nothing after it but oclif reads it its own way.
    if (tokens.includes('--')) return undefined
    const status = p.flags.get('status')?.[0]
    if (status !== undefined && !(ROUTE_VM_STATUSES as readonly string[]).includes(status)) return undefined
    return {kind: 'list', all: p.flags.has('all'), status, json: p.flags.has('json')}
  }
  if (command !== 'exec' && command !== 'run') return undefined
  const p = scan(tokens, command === 'exec' ? EXEC : RUN)
  if (!p) return undefined
  const f = p.flags
  const vm = f.get('vm')?.[0]
  const cmd = f.get('cmd')?.[0]
  const hello = f.has('hello')
  const timeout = timeoutOf(f.get('timeout')?.[0])
  if (vm === undefined || timeout === null) return undefined
  // exactly one of --cmd, --hello, argv: the normal path words the refusals.
  if ([cmd !== undefined, hello, p.rest.length > 0].filter(Boolean).length !== 1) return undefined
  return {kind: 'exec', command, vm, cmd, argv: p.rest, hello, env: f.get('env') ?? [], workdir: f.get('workdir')?.[0], timeout, json: f.has('json')}
}

/**
 * Whether the environment leaves rendering at the default: log level info, no log file, no JSON
 * content type. Only oclif's flag parsing (base-command.ts) applies the others, so the route and
 * the CLI's fast path take a command line only when this holds.
 */
export function defaultRendering(env: NodeJS.ProcessEnv): boolean {
  return !((env.AGENT_LOG_LEVEL && env.AGENT_LOG_LEVEL !== 'info') || env.AGENT_LOG_FILE || env.AGENT_CONTENT_TYPE)
}

/** AGENT_* variables that do not change what exec or list do (server-only, or create-only). */
const ROUTE_ENV_IGNORED = new Set(['AGENT_API_KEY', 'AGENT_LAUNCHER', 'AGENT_RUNTIME', 'AGENT_SERVE_ROUTE', 'AGENT_STATE_DIR', 'AGENT_PULL_TIMEOUT', 'AGENT_APT_MIRROR'])

/**
 * The environment a routed command depends on: the AGENT_* variables (set, non-empty), which must
 * be the same for client and server, else the client goes its own way.
 */
export function routeEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {}
  for (const k of Object.keys(env).sort()) if (k.startsWith('AGENT_') && !ROUTE_ENV_IGNORED.has(k) && env[k]) out[k] = env[k]!
  return out
}

/** What the client says first (frame HELLO, JSON). */
export interface RouteHello {
  proto: number
  version: string
  root: string
  argv: string[]
  env: Record<string, string>
  /** The client streams its stdin (not a terminal, and the command would read it). */
  stdin: boolean
}
