import {FileTypeError, fileRunArgv, type Runtime} from '@agent/runtime-kit'
import {AgentError, conflict, usageError} from '../errors.js'
import {requireCapability, type ExecRequest, type ExecResult} from '../launchers/launcher.js'
import {launcher as launcherByName} from '../launchers/select.js'
import type {VmRecord} from '../state/vm-record.js'
import {checkInputFiles, copyInputFiles, copyOutputs} from '../util/files.js'
import {launchContext, type ServiceContext} from './context.js'
import {resolveVm, runtimeFor, testHook} from './vm-service.js'

/** Running a command in a VM: what to run, and running it through the VM's launcher. */
export interface ExecOptions {
  /** A shell command line, run with /bin/sh -c in the guest. */
  cmd?: string
  /** A command as an argv, run without a shell (`vm exec -- python3 -c 'print(1)'`). */
  argv?: readonly string[]
  /** Run the runtime's hello. */
  hello?: boolean
  /** `vm shell`: the image's shell (bash, else sh), or the runtime's REPL. */
  shell?: 'shell' | 'repl'
  /** Host files copied into /in (base name only). */
  files?: string[]
  env?: Record<string, string>
  workdir?: string
  timeoutSec: number
  /** Copy /out back here afterwards. */
  outDir?: string
  stdin?: ExecRequest['stdin']
  /** A PTY in the guest (`vm exec -t`, `vm shell`); the VM's launcher must have capabilities.tty. */
  tty?: ExecRequest['tty']
  onResize?: ExecRequest['onResize']
  output: ExecRequest['output']
  maxCaptureBytes?: number
  onOutput?: ExecRequest['onOutput']
  signal?: AbortSignal
}

/** The image's own shell: bash where the image has it, else sh. */
export const IMAGE_SHELL = ['/bin/sh', '-c', 'if command -v bash >/dev/null 2>&1; then exec bash; fi; exec sh'] as const

/** What to run, decided before anything touches the VM. */
export function commandArgv(runtime: Runtime, o: Pick<ExecOptions, 'cmd' | 'hello' | 'argv' | 'shell'>, fileNames: string[]): string[] {
  const given = [o.hello && '--hello', o.cmd !== undefined && '--cmd', o.argv?.length && 'a command after --'].filter(Boolean)
  if (given.length > 1) throw usageError(`give one of --hello, --cmd or a command after --, not ${given.join(' and ')}`)
  if (o.shell === 'repl') {
    if (!runtime.repl) throw usageError(`${runtime.language} has no REPL (its runtime plugin declares none)`, 'open the image\'s shell instead: `agent vm shell ID` without --repl')
    return [...runtime.repl]
  }
  if (o.shell === 'shell') return [...IMAGE_SHELL]
  if (o.hello) return [...runtime.hello]
  if (o.argv?.length) {
    if (o.argv.some((a) => a.includes('\0'))) throw usageError('the command after -- must not contain NUL bytes')
    return [...o.argv]
  }
  if (o.cmd !== undefined) {
    if (o.cmd.includes('\0')) throw usageError('--cmd must not contain NUL bytes')
    return ['/bin/sh', '-c', o.cmd]
  }
  if (fileNames.length > 0) {
    try {
      return fileRunArgv(runtime, `/in/${fileNames[0]}`)
    } catch (err) {
      if (err instanceof FileTypeError) throw usageError(`${err.message}`, `give a file ending in ${err.known.join(' or ')}, or run it with --cmd`)
      throw err
    }
  }
  throw usageError('nothing to run: give a command after --, --cmd, --hello, or --file with a file the runtime knows how to run')
}

export async function execVm(ctx: ServiceContext, vmOrRef: VmRecord | string, o: ExecOptions): Promise<{vm: VmRecord; result: ExecResult}> {
  const vm = typeof vmOrRef === 'string' ? await resolveVm(ctx, vmOrRef) : vmOrRef
  const files = checkInputFiles(o.files ?? [])
  const {runtime} = await runtimeFor(ctx, vm)
  const argv = commandArgv(runtime, o, files.map((f) => f.name))
  if (vm.status !== 'running') {
    throw conflict(`VM ${vm.id} is ${vm.status}, not running`, vm.status === 'stopped' ? `start it with \`agent vm start ${vm.id}\`` : `clean it with \`agent vm clean ${vm.id}\``)
  }
  const l = await launcherByName(vm.launcher)
  if (o.tty && !l.capabilities.tty) {
    throw new AgentError('unavailable', `VM ${vm.id} runs on ${vm.launcher}, which cannot attach a terminal to a guest command`, {hint: 'run the command without -t (stdin still streams with -i), or use a VM on a launcher that can (see `agent doctor`)'})
  }
  if (files.length > 0) {
    requireCapability(l, 'files', 'unavailable', `VM ${vm.id} (${vm.launcher}) has no guest volumes, so --file cannot reach it`)
    copyInputFiles(files, ctx.paths.inDir(vm.id))
  }
  const lctx = launchContext(ctx, vm, runtime.env)
  await testHook('exec')
  const result = await l.exec(vm, lctx, {
    argv,
    env: o.env,
    workdir: o.workdir,
    timeoutSec: o.timeoutSec,
    stdin: o.stdin,
    tty: o.tty,
    onResize: o.onResize,
    output: o.output,
    maxCaptureBytes: o.maxCaptureBytes,
    onOutput: o.onOutput,
    signal: o.signal ?? ctx.signal,
    outputs: Boolean(o.outDir),
  })
  if (o.outDir) copyOutputs(ctx.paths.outDir(vm.id), o.outDir)
  if (result.sandboxLost) await (await ctx.db()).update(vm.id, {status: 'stopped', lastError: result.sandboxLost})
  return {vm, result}
}

/** A one-line explanation for exit codes agent itself caused. */
export function describeExit(vm: VmRecord, r: ExecResult, timeoutSec: number): string | undefined {
  if (r.timedOut) return `command in ${vm.id} timed out after ${timeoutSec}s and was killed (exit 124)`
  if (r.oom) return `command in ${vm.id} ran out of memory: it was killed for exceeding the ${vm.memoryMib} MiB limit (exit 137)`
  return undefined
}
