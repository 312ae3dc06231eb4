/**
 * envd (sandbox port 49983): the Connect RPC services process.Process and filesystem.Filesystem
 * (JSON codec) and the REST routes /files and /health, for whichever sandbox the request names
 * in E2b-Sandbox-Id. Handlers translate; the work is done by ProcessTable and GuestFs.
 */
import {timestampFromDate} from '@bufbuild/protobuf/wkt'
import {Code, ConnectError, createContextKey, createContextValues, type ConnectRouter, type HandlerContext} from '@connectrpc/connect'
import {EntryInfoSchema, Filesystem, FileType} from './gen/envd/filesystem_pb.js'
import {Process, Signal} from './gen/envd/process_pb.js'
import type {MessageInitShape} from '@bufbuild/protobuf'
import {guestPath as httpGuestPath} from './guest.js'
import {HttpError} from './http-errors.js'
import type {GuestEntry} from './guest-fs.js'
import {attach, drain, EventQueue, type ProcEvent} from './processes.js'
import type {SandboxRuntime} from './runtime.js'

/** What the HTTP layer learned about a per-sandbox request before Connect saw it. */
export interface SandboxCall {
  rt: SandboxRuntime
  /** The Connect-Timeout-Ms the client sent (envd treats it as the process's lifetime), in ms; 0: none. */
  timeoutMs: number
  /** Keepalive-Ping-Interval, in ms. */
  keepaliveMs: number
  username?: string
}

export const kCall = createContextKey<SandboxCall | undefined>(undefined)

export function callValues(call: SandboxCall) {
  return createContextValues().set(kCall, call)
}

function callOf(ctx: HandlerContext): SandboxCall {
  const c = ctx.values.get(kCall)
  if (!c) throw new ConnectError('missing E2b-Sandbox-Id', Code.InvalidArgument)
  return c
}

/** guestPath, with bad input as Connect's invalid_argument. */
function guestPath(p: unknown, username?: string): string {
  try {
    return httpGuestPath(p, username)
  } catch (err) {
    if (err instanceof HttpError) throw new ConnectError(err.message, Code.InvalidArgument)
    throw err
  }
}

const TYPE: Record<GuestEntry['type'], FileType> = {file: FileType.FILE, dir: FileType.DIRECTORY, symlink: FileType.SYMLINK, other: FileType.UNSPECIFIED}

function entryInfo(e: GuestEntry): MessageInitShape<typeof EntryInfoSchema> {
  return {
    name: e.name,
    type: TYPE[e.type],
    path: e.path,
    size: e.size,
    mode: e.mode,
    permissions: e.permissions,
    owner: e.owner,
    group: e.group,
    modifiedTime: timestampFromDate(e.modified),
    symlinkTarget: e.symlinkTarget,
  }
}

function toResponse(e: ProcEvent) {
  return {event: {event: e}} as never
}

export function envdRoutes(router: ConnectRouter): void {
  router.service(Process, {
    async *start(req, ctx) {
      const call = callOf(ctx)
      if (req.pty) throw new ConnectError('PTY processes are not supported by agent serve', Code.Unimplemented)
      if (!req.process?.cmd) throw new ConnectError('process.cmd is required', Code.InvalidArgument)
      const queue = new EventQueue()
      const p = call.rt.processes.start(
        {
          config: {cmd: req.process.cmd, args: req.process.args, envs: req.process.envs, cwd: req.process.cwd ? guestPath(req.process.cwd, call.username) : undefined},
          tag: req.tag,
          stdin: req.stdin ?? false,
          timeoutSec: call.timeoutMs > 0 ? Math.ceil(call.timeoutMs / 1000) : 0,
          sandboxEnv: call.rt.meta().envVars,
          username: call.username,
        },
        queue.push,
      )
      for await (const e of drain(queue, ctx.signal, call.keepaliveMs, () => p.listeners.delete(queue.push))) yield toResponse(e)
    },
    async *connect(req, ctx) {
      const call = callOf(ctx)
      const p = call.rt.processes.find(req.process?.selector)
      const {queue, unsub} = attach(p)
      for await (const e of drain(queue, ctx.signal, call.keepaliveMs, unsub)) yield toResponse(e)
    },
    async list(_req, ctx) {
      const call = callOf(ctx)
      return {processes: call.rt.processes.list().map((p) => ({pid: p.pid, tag: p.tag, config: p.config}))}
    },
    async sendInput(req, ctx) {
      const t = callOf(ctx).rt.processes
      const p = t.find(req.process?.selector)
      const inp = req.input?.input
      if (inp?.case === 'pty') throw new ConnectError('PTY input is not supported by agent serve', Code.Unimplemented)
      if (inp?.case === 'stdin') t.input(p, inp.value)
      return {}
    },
    async streamInput(reqs, ctx) {
      const t = callOf(ctx).rt.processes
      let p: ReturnType<typeof t.find> | undefined
      for await (const r of reqs) {
        if (r.event.case === 'start') p = t.find(r.event.value.process?.selector)
        else if (r.event.case === 'data') {
          if (!p) throw new ConnectError('StreamInput: data before start', Code.InvalidArgument)
          const inp = r.event.value.input?.input
          if (inp?.case === 'stdin') t.input(p, inp.value)
          else if (inp?.case === 'pty') throw new ConnectError('PTY input is not supported by agent serve', Code.Unimplemented)
        }
      }
      return {}
    },
    async sendSignal(req, ctx) {
      const t = callOf(ctx).rt.processes
      const p = t.find(req.process?.selector)
      if (req.signal !== Signal.SIGKILL && req.signal !== Signal.SIGTERM) throw new ConnectError('signal must be SIGNAL_SIGKILL or SIGNAL_SIGTERM', Code.InvalidArgument)
      t.signal(p, req.signal === Signal.SIGKILL ? 'SIGKILL' : 'SIGTERM')
      return {}
    },
    async closeStdin(req, ctx) {
      const t = callOf(ctx).rt.processes
      t.closeStdin(t.find(req.process?.selector))
      return {}
    },
    async update() {
      throw new ConnectError('PTY processes are not supported by agent serve', Code.Unimplemented)
    },
  })

  router.service(Filesystem, {
    async stat(req, ctx) {
      const call = callOf(ctx)
      return {entry: entryInfo(await call.rt.fs.stat(guestPath(req.path, call.username)))}
    },
    async makeDir(req, ctx) {
      const call = callOf(ctx)
      return {entry: entryInfo(await call.rt.fs.makeDir(guestPath(req.path, call.username)))}
    },
    async move(req, ctx) {
      const call = callOf(ctx)
      return {entry: entryInfo(await call.rt.fs.move(guestPath(req.source, call.username), guestPath(req.destination, call.username)))}
    },
    async listDir(req, ctx) {
      const call = callOf(ctx)
      return {entries: (await call.rt.fs.list(guestPath(req.path, call.username), req.depth)).map(entryInfo)}
    },
    async remove(req, ctx) {
      const call = callOf(ctx)
      await call.rt.fs.remove(guestPath(req.path, call.username))
      return {}
    },
  })
}
