/** Documented exit codes (README: "Exit codes"). A guest's own exit code passes through as is. */
export const ExitCode = {
  Ok: 0,
  /** An unexpected failure inside agent itself. */
  Internal: 1,
  /** Bad flags, arguments or input. */
  Usage: 2,
  /** The VM, image or runtime asked for does not exist. */
  NotFound: 3,
  /** The request clashes with current state: a name in use, a VM busy or in the wrong state. */
  Conflict: 4,
  /** A runtime, binary or host facility is missing or unusable (launcher, KVM, state dir). */
  Unavailable: 5,
  /** One or more guest commands failed (fan-out over several VMs). */
  GuestFailed: 6,
  /** Pulling or building an image failed. */
  Image: 7,
  /** The guest command ran past --timeout and was killed. */
  Timeout: 124,
  /** The guest command was killed for running out of memory. */
  OutOfMemory: 137,
  /** Interrupted by Ctrl-C. */
  Interrupted: 130,
} as const
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode]

export type ErrorKind = 'usage' | 'not_found' | 'conflict' | 'unavailable' | 'image' | 'guest' | 'internal' | 'interrupted'

const KIND_EXIT: Record<ErrorKind, number> = {
  usage: ExitCode.Usage,
  not_found: ExitCode.NotFound,
  conflict: ExitCode.Conflict,
  unavailable: ExitCode.Unavailable,
  image: ExitCode.Image,
  guest: ExitCode.GuestFailed,
  internal: ExitCode.Internal,
  interrupted: ExitCode.Interrupted,
}

export interface AgentErrorOptions {
  /** A line telling the user what to do about it. */
  hint?: string
  cause?: unknown
  exitCode?: number
}

/** An error meant for the user: printed as one line (plus a hint), never with a stack at default log level. */
export class AgentError extends Error {
  readonly kind: ErrorKind
  readonly hint?: string
  readonly exitCode: number
  constructor(kind: ErrorKind, message: string, opts: AgentErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : {cause: opts.cause})
    this.name = 'AgentError'
    this.kind = kind
    this.hint = opts.hint
    this.exitCode = opts.exitCode ?? KIND_EXIT[kind]
  }
}

export const usageError = (msg: string, hint?: string) => new AgentError('usage', msg, {hint})
export const notFound = (what: string, id: string, hint?: string) =>
  new AgentError('not_found', `${what} not found: ${JSON.stringify(id)}`, {hint})
export const conflict = (msg: string, hint?: string) => new AgentError('conflict', msg, {hint})
export const unavailable = (msg: string, hint?: string, cause?: unknown) => new AgentError('unavailable', msg, {hint, cause})

/**
 * Ends the command with a given exit code once its results are already printed: a guest's own
 * exit code, or a fan-out summary (`summary` goes to stderr; stdout is left as it is).
 */
export class GuestExit extends Error {
  constructor(
    readonly exitCode: number,
    readonly summary?: string,
  ) {
    super(summary ?? `guest exited with ${exitCode}`)
    this.name = 'GuestExit'
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message
  return String(err)
}
