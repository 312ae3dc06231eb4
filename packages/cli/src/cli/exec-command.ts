import type {Readable} from 'node:stream'
import {ExitCode, GuestExit, usageError} from '../errors.js'
import type {ExecResult} from '../launchers/launcher.js'
import {logger} from '../logging/logger.js'
import type {ServiceContext} from '../services/context.js'
import {describeExit, execVm, type ExecOptions} from '../services/vm-exec.js'
import {listVms, resolveVm} from '../services/vm-service.js'
import {parseEnv} from '../util/validate.js'
import {languageLabel, type VmRecord} from '../state/vm-record.js'

/** Per-VM output is capped in capture mode (fan-out and --json); see README "Output limits". */
export const MAX_CAPTURE_BYTES = 1024 * 1024

export interface ExecJson {
  id: string
  language: string | null
  exitCode: number | null
  stdout: string
  stderr: string
  stdoutTruncated: boolean
  stderrTruncated: boolean
  timedOut: boolean
  oom: boolean
  durationMs: number
  error: string | null
}

export interface ExecCommandInput {
  vm?: string[]
  all?: boolean
  concurrency?: number
  cmd?: string
  /** The command after `--`, run without a shell. */
  argv?: string[]
  hello?: boolean
  /** `vm shell`: the image's shell or the runtime's REPL (implies interactive + tty). */
  shell?: 'shell' | 'repl'
  /** -i: stream stdin even when it is a terminal. */
  interactive?: boolean
  /** -t: run on a PTY in the guest (needs stdin to be a terminal; one VM; no --json). */
  tty?: boolean
  env?: string[]
  workdir?: string
  timeout: number
  file?: string[]
  out?: string
  json: boolean
  /**
   * agent serve's route: the client's stdin (undefined: none) and where a single VM's output
   * streams, instead of this process's own stdio; `output` returns a promise while the client is
   * full, and the guest's output waits for it (ExecRequest.onOutput).
   */
  stdio?: {stdin?: Readable; output(stream: 'stdout' | 'stderr', chunk: Buffer): void | PromiseLike<void>}
}

/**
 * `vm exec` and `vm run`: one VM streams plainly and exits with the guest's code;
 * several run concurrently under listr2 and exit 0 only if every one succeeded.
 */
export async function runExecCommand(ctx: ServiceContext, input: ExecCommandInput, print: (s: string) => void): Promise<ExecJson[]> {
  if (!input.vm?.length && !input.all) throw usageError('say which VMs: --vm ID (repeatable) or --all')
  const env = parseEnv(input.env)
  const base: Omit<ExecOptions, 'output'> = {cmd: input.cmd, argv: input.argv?.length ? input.argv : undefined, hello: input.hello, shell: input.shell, files: input.file, env, workdir: input.workdir, timeoutSec: input.timeout, outDir: input.out}
  if (input.tty || input.interactive) {
    const flag = input.tty ? '-t' : '-i'
    if (input.all || (input.vm?.length ?? 0) > 1) throw usageError(`${flag} works with one VM (--vm ID), not several`)
    if (input.json) throw usageError(`${flag} and --json do not go together: an interactive session streams`)
  }
  if (input.tty) return [await runTerminal(ctx, input.vm![0]!, base, input)]
  const refs = input.all ? (await listVms(ctx, {status: 'running'})).map((v) => v.id) : [...new Set(input.vm)]
  if (refs.length === 0) {
    logger().info('no running VMs: nothing to do')
    return []
  }
  if (refs.length === 1 && !input.all) {
    const ref = refs[0]
    if (input.json) {
      const {vm, result} = await execVm(ctx, ref, {...base, output: 'capture', maxCaptureBytes: MAX_CAPTURE_BYTES})
      const doc = toJson(vm.id, vm, result)
      const why = describeExit(vm, result, input.timeout)
      if (why) logger().error(why)
      if (result.exitCode !== 0) {
        print(JSON.stringify([doc], null, 2))
        throw new GuestExit(result.exitCode)
      }
      return [doc]
    }
    // A terminal's stdin is passed only with -i: a command that does not read it must not wait for it.
    const stdin = input.stdio ? input.stdio.stdin : input.interactive || !process.stdin.isTTY ? 'inherit' : undefined
    // Routed: streamed to the client as it comes, nothing kept (maxCaptureBytes 0).
    const output = input.stdio ? ({output: 'capture', maxCaptureBytes: 0, onOutput: input.stdio.output} as const) : ({output: 'inherit'} as const)
    const {vm, result} = await execVm(ctx, ref, {...base, ...output, stdin})
    const why = describeExit(vm, result, input.timeout)
    if (why) logger().error(why)
    if (result.exitCode !== 0) throw new GuestExit(result.exitCode)
    return [toJson(vm.id, vm, result)]
  }

  const vms = new Map<string, VmRecord>()
  // listr2 is loaded only when work fans out: a single exec streams without it.
  const {fanout} = await import('../services/fanout.js')
  const outcomes = await fanout(
    refs,
    async (ref, task) => {
      const vm = await resolveVm(ctx, ref)
      vms.set(ref, vm)
      task.title(`${vm.id} (${languageLabel(vm)}) running`)
      const {result} = await execVm(ctx, vm, {...base, output: 'capture', maxCaptureBytes: MAX_CAPTURE_BYTES})
      return result
    },
    {
      concurrency: input.concurrency,
      signal: ctx.signal,
      title: (ref) => `${ref}: waiting`,
      done: (ref, r) => {
        const vm = vms.get(ref)!
        const label = `${vm.id} (${languageLabel(vm)})`
        if (r.exitCode === 0) return {title: `${label} exit 0`}
        return {title: `${label} exit ${r.exitCode}`, failure: describeExit(vm, r, input.timeout) ?? `exit ${r.exitCode}`}
      },
    },
  )
  const docs = outcomes.map((o) => toJson(o.ref, vms.get(o.ref), o.value, o.error))
  if (!input.json) {
    for (const d of docs) {
      print(`=== ${d.id}${d.language ? ` (${d.language})` : ''}: ${d.error ? `FAILED: ${d.error}` : `exit ${d.exitCode}`}`)
      if (d.stdout) print(d.stdout.replace(/\n$/, '') + (d.stdoutTruncated ? `\n[stdout truncated at ${MAX_CAPTURE_BYTES} bytes]` : ''))
      if (d.stderr) print(`[stderr]\n${d.stderr.replace(/\n$/, '')}${d.stderrTruncated ? `\n[stderr truncated at ${MAX_CAPTURE_BYTES} bytes]` : ''}`)
    }
  }
  failIfAny(docs.filter((d) => d.error || d.exitCode !== 0).map((d) => `${d.id}: ${d.error ?? `exit ${d.exitCode}`}`), refs.length, ctx.signal?.aborted, input.json ? () => print(JSON.stringify(docs, null, 2)) : undefined)
  return docs
}

/**
 * `-t` (and `vm shell`): the command runs on a PTY in the guest, sized like ours and resized with
 * it. With -i our terminal is in raw mode for the whole session, so keys (^C, ^D, ^Z) reach the
 * guest as bytes; raw mode is left on every way out.
 */
async function runTerminal(ctx: ServiceContext, ref: string, base: Omit<ExecOptions, 'output'>, input: ExecCommandInput): Promise<ExecJson> {
  const {requireTerminal, takeTerminal} = await import('./terminal.js')
  requireTerminal(
    input.shell ? 'vm shell' : '-t',
    input.shell ? 'run it from a terminal; to feed commands from a pipe: `echo ... | agent vm exec --vm ID -- sh`' : 'run it from a terminal, or leave out -t to pipe stdin (`echo ... | agent vm exec --vm ID -- cat`)',
  )
  // The guest's programs learn what the terminal understands, as under `docker exec -t`.
  const env = {TERM: process.env.TERM || 'xterm', ...base.env}
  let out: {vm: VmRecord; result: ExecResult}
  const term = await takeTerminal(Boolean(input.interactive))
  try {
    out = await execVm(ctx, ref, {...base, env, output: 'inherit', stdin: input.interactive ? 'inherit' : undefined, tty: term.size, onResize: term.onResize})
  } finally {
    term.restore()
  }
  const {vm, result} = out
  const why = describeExit(vm, result, input.timeout)
  if (why) logger().error(why)
  if (result.exitCode !== 0) throw new GuestExit(result.exitCode)
  return toJson(vm.id, vm, result)
}

/** Ends a fan-out with a summary naming each VM that failed. */
export function failIfAny(failures: string[], total: number, interrupted = false, beforeThrow?: () => void): void {
  if (failures.length === 0) return
  beforeThrow?.()
  throw new GuestExit(interrupted ? ExitCode.Interrupted : ExitCode.GuestFailed, `${failures.length} of ${total} VMs failed: ${failures.join('; ')}`)
}

function toJson(ref: string, vm: VmRecord | undefined, r: ExecResult | undefined, error?: string): ExecJson {
  return {
    id: vm?.id ?? ref,
    language: vm?.language ?? null,
    exitCode: r?.exitCode ?? null,
    stdout: r?.stdout ?? '',
    stderr: r?.stderr ?? '',
    stdoutTruncated: r?.stdoutTruncated ?? false,
    stderrTruncated: r?.stderrTruncated ?? false,
    timedOut: r?.timedOut ?? false,
    oom: r?.oom ?? false,
    durationMs: Math.round(r?.durationMs ?? 0),
    error: error ?? (r?.timedOut ? 'timed out' : r?.oom ? 'out of memory' : null),
  }
}
