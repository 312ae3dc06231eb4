/**
 * The sh script that runs a command in a krunvm guest, and how it reaches the guest: as a file in
 * /in when the VM has guest volumes, else inline on the guest kernel command line.
 */
import {AgentError, usageError} from '../../errors.js'
import {ENV_NAME} from './argv.js'

/** Guest paths are single top-level dirs: krunvm refuses nested guest paths. */
export const GUEST_IN = '/in'
export const GUEST_OUT = '/out'
export const GUEST_PERSIST = '/persist'

/** Without volumes, a command travels on the guest kernel command line (about 2 KiB on aarch64). */
export const INLINE_LIMIT_BYTES = 2000

/** What to do when a VM has no guest volumes. */
export const VOLUMES_HINT = 'set AGENT_ENABLE_GUEST_VOLUMES=1 and create the VM again, or pass the code with --cmd'

/** Characters that cannot travel on the kernel command line (each word is quoted, unescaped). */
export const CMDLINE_UNSAFE = /["\x00-\x1f\x7f-\uffff]/
/** Characters that printf or single quotes would misread. */
const PRINTF_UNSAFE = /["\\%'\x00-\x1f\x7f-\uffff]/

/** Quotes a word for POSIX sh: the result is always one literal word. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}

export interface ScriptOptions {
  argv: readonly string[]
  env?: Readonly<Record<string, string>>
  workdir?: string
  /** Guest path of a file the script creates first, proving the guest command started. */
  marker?: string
  /**
   * For `sh -c SCRIPT` on the guest kernel command line: one line, and no byte that the kernel
   * command line cannot carry (`"`, control characters, non-ASCII). Words holding such bytes are
   * rebuilt in the guest with printf octal escapes into variables, expanded with IFS empty and
   * globbing off, so every word still arrives exactly as given.
   */
  inline?: boolean
}

/** A printf format that prints exactly `s` (octal escapes for everything but plain ASCII). */
export function printfFormat(s: string): string {
  let out = ''
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b)
    out += b >= 0x20 && b < 0x7f && !PRINTF_UNSAFE.test(c) ? c : `\\${b.toString(8).padStart(3, '0')}`
  }
  return out
}

/** The sh script that runs a command in the guest: env exports, cd, then `exec` of the argv. */
export function guestScript(o: ScriptOptions): string {
  if (o.argv.length === 0) throw usageError('nothing to run')
  const lines: string[] = []
  if (!o.inline) lines.push('# written by agent; run by /bin/sh in a krunvm guest')
  if (o.marker) lines.push(`: > ${shQuote(o.marker)}`)
  let vars = 0
  const prelude: string[] = []
  // A word as sh source: single-quoted, or (inline, unsafe bytes) a variable built by printf.
  const word = (s: string, name?: string): {src: string; assign?: string} => {
    if (!o.inline || !CMDLINE_UNSAFE.test(s)) return {src: shQuote(s)}
    const v = name ?? `_a${++vars}`
    // `x` keeps trailing newlines from $(...); assignments are neither split nor globbed.
    return {src: `$${v}`, assign: `${v}=$(printf '${printfFormat(s)}x'); ${v}=\${${v}%x}`}
  }
  for (const [k, v] of Object.entries(o.env ?? {})) {
    if (!ENV_NAME.test(k)) throw usageError(`invalid environment variable name ${JSON.stringify(k)}`)
    if (v.includes('\0')) throw usageError(`environment variable ${k} contains a NUL byte`)
    const w = word(v, k)
    lines.push(w.assign ? `${w.assign}; export ${k}` : `export ${k}=${w.src}`)
  }
  if (o.workdir) {
    const w = word(o.workdir)
    if (w.assign) lines.push(w.assign)
    lines.push(`cd ${w.src} || exit 1`)
  }
  for (const a of o.argv) if (a.includes('\0')) throw usageError('command arguments must not contain NUL bytes')
  const words = o.argv.map((a) => word(a))
  for (const w of words) if (w.assign) lines.push(w.assign)
  lines.push(`exec ${words.map((w) => w.src).join(' ')}`)
  // Unquoted $vars must expand to exactly one word each: no field splitting, no globbing.
  if (o.inline && vars > 0) prelude.push('IFS=', 'set -f')
  return o.inline ? [...prelude, ...lines].join('; ') : `${lines.join('\n')}\n`
}

/** The first word of a command (or its workdir) that names /in, /out or /persist, if any. */
export function guestVolumeReference(argv: readonly string[], workdir?: string): string | undefined {
  return [...argv, workdir ?? ''].find((a) => /(^|[\s'"=:])\/(in|out|persist)(\/|$|[\s'"])/.test(a))
}

/**
 * The guest argv for a VM without volumes: `/bin/sh -c SCRIPT`, the script inline on the kernel
 * command line. Refused when it would not fit there.
 */
export function inlineGuestArgv(o: Omit<ScriptOptions, 'inline' | 'marker'>): string[] {
  const script = guestScript({...o, inline: true})
  const bytes = Buffer.byteLength(script) + Buffer.byteLength('/bin/sh -c ') + 8
  if (bytes > INLINE_LIMIT_BYTES) {
    throw usageError(
      `the command is too long for a krunvm VM without guest volumes (${bytes} bytes; limit ${INLINE_LIMIT_BYTES}): it would travel on the guest kernel command line`,
      VOLUMES_HINT,
    )
  }
  // libkrun puts the arguments on the kernel command line quoted but not escaped.
  if (CMDLINE_UNSAFE.test(script)) throw new AgentError('internal', 'inline krunvm script is not command-line safe')
  return ['/bin/sh', '-c', script]
}
