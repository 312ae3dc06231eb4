/**
 * Running things inside a sandbox for the API: every guest operation (a user's command, a
 * filesystem call, a file transfer, an interpreter) is one `execVm` of the service floor, so
 * paths are resolved by the guest kernel inside the sandbox and never on the host.
 */
import {posix} from 'node:path'
import type {Readable} from 'node:stream'
import {execVm, type ExecResult, type ServiceContext, type VmRecord} from './floor.js'
import {HttpError} from './http-errors.js'

/** The E2B SDK's default user and its home; processes see HOME and USER set to these. */
export const DEFAULT_USER = 'user'
export const DEFAULT_HOME = '/home/user'
/** An exec with no lifetime of its own still ends: a day, E2B's longest sandbox lifetime. */
export const MAX_EXEC_SEC = 86_400

export function shellQuote(s: string): string {
  if (s.includes('\0')) throw new HttpError(400, 'arguments and paths must not contain NUL bytes')
  return `'${s.replace(/'/g, `'\\''`)}'`
}

/** A shell command line that runs argv exactly, with no word splitting. */
export function argvCommand(argv: readonly string[]): string {
  return `exec ${argv.map(shellQuote).join(' ')}`
}

/** A script with positional parameters bound safely: `set -- 'a' 'b'` then the script. */
export function scriptCommand(script: string, args: readonly string[]): string {
  return `set -- ${args.map(shellQuote).join(' ')}\n${script}`
}

export function homeOf(username: string | undefined): string {
  return username === 'root' ? '/root' : DEFAULT_HOME
}

/** An absolute, lexically normalised guest path (relative paths are relative to the user's home). */
export function guestPath(p: unknown, username?: string): string {
  if (typeof p !== 'string' || p === '') throw new HttpError(400, 'path is required')
  if (p.includes('\0')) throw new HttpError(400, 'path must not contain NUL bytes')
  return posix.normalize(p.startsWith('/') ? p : posix.join(homeOf(username), p))
}

export interface GuestRun {
  cmd: string
  env?: Record<string, string>
  cwd?: string
  stdin?: Readable
  timeoutSec?: number
  onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void
  signal?: AbortSignal
  /** Keep at most this much of each stream in the result (onOutput always sees everything). */
  maxCaptureBytes?: number
}

export async function runInGuest(ctx: ServiceContext, vm: VmRecord, r: GuestRun): Promise<ExecResult> {
  const {result} = await execVm(ctx, vm, {
    cmd: r.cmd,
    env: r.env,
    workdir: r.cwd,
    stdin: r.stdin,
    timeoutSec: r.timeoutSec ?? 60,
    output: 'capture',
    maxCaptureBytes: r.maxCaptureBytes ?? 64 * 1024,
    onOutput: r.onOutput,
    signal: r.signal,
  })
  return result
}
