import {AgentError, ExitCode, GuestExit, errorMessage} from '../errors.js'

/** What a failed command prints and exits with (the commands, and agent serve's route, alike). */
export interface ErrorOutput {
  code: number
  /** The --json error document, or ''. */
  stdout: string
  stderr: string
  message: string
}

export function errorOutput(err: Error & {exitCode?: number}, o: {json: boolean; debug: boolean}): ErrorOutput {
  // The guest's own exit code: its output said it all, a fan-out adds its summary.
  if (err instanceof GuestExit) return {code: err.exitCode, stdout: '', stderr: err.summary ? `Error: ${err.summary}\n` : '', message: err.message}
  const {code, message, hint, kind} = describe(err, o.debug)
  return {
    code,
    stdout: o.json ? JSON.stringify({error: {kind, message, hint, exitCode: code}}, null, 2) + '\n' : '',
    stderr: `Error: ${message}\n${hint ? `Hint: ${hint}\n` : ''}${o.debug && err.stack ? `${err.stack}\n` : ''}`,
    message,
  }
}

function describe(err: Error & {exitCode?: number; oclif?: {exit?: number}}, debug: boolean): {code: number; message: string; hint?: string; kind: string} {
  if (err instanceof AgentError) return {code: err.exitCode, message: err.message, hint: err.hint, kind: err.kind}
  // oclif's own parse errors (bad flag values, missing required flags) are usage errors. Its
  // CLIError is known by the `oclif` object every instance carries, so that this renderer does not
  // load oclif (the fast path, cli/local-command.ts, runs without it).
  const oclifError = typeof err.oclif === 'object' && err.oclif !== null
  if (oclifError || (err as {parse?: unknown}).parse || /^Parsing --/.test(err.message)) {
    return {code: ExitCode.Usage, message: firstLine(err.message), hint: 'see --help for the flags this command takes', kind: 'usage'}
  }
  return {
    code: ExitCode.Internal,
    message: `internal error: ${firstLine(errorMessage(err))}`,
    hint: debug ? undefined : 'run again with --log-level debug for the stack trace',
    kind: 'internal',
  }
}

function firstLine(s: string): string {
  return s.split('\n').map((l) => l.trim()).filter(Boolean).join(' ').slice(0, 500)
}
