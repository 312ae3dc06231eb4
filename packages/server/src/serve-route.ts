/**
 * The CLI's route through a running server: <state>/serve.sock (mode 0600, in the state dir that
 * is already the user's). A CLI client sends its command line; the server runs the commands' own
 * front-end code (cli/routed-command.ts, the error renderer) on its open database and
 * streams stdout, stderr and the exit code back, so the output is the normal path's by
 * construction. The socket's bytes are untrusted: bounded frames, the command line parsed again
 * by the same narrow parser, and a client that differs in version, state dir or AGENT_*
 * environment is refused (it then runs the command itself).
 */
import {rmSync, chmodSync} from 'node:fs'
import {createServer, type Socket} from 'node:net'
import {PassThrough} from 'node:stream'
import {
  AgentError,
  drainedOrClosed,
  errorMessage,
  errorOutput,
  frames as F,
  logger,
  routableRequest,
  routeEnv,
  runRoutedCommand,
  withConsole,
  type RouteHello,
  type RoutedRequest,
  type ServiceContext,
} from './floor.js'

/** A client that connects and says nothing is dropped after this long. */
const HELLO_MS = 10_000
const SIGNALS = new Set(['SIGINT', 'SIGTERM', 'SIGHUP'])

export interface ServeRoute {
  path: string
  /** Commands run for clients so far. */
  served(): number
  close(): Promise<void>
}

/** Why a hello is refused, or undefined with the request it asks for. */
export function checkHello(raw: Buffer, own: {version: string; root: string; env: NodeJS.ProcessEnv}): {refuse: string} | {hello: RouteHello; req: RoutedRequest} {
  let h: Partial<RouteHello>
  try {
    h = JSON.parse(raw.toString('utf8')) as Partial<RouteHello>
  } catch {
    return {refuse: 'hello is not JSON'}
  }
  if (typeof h !== 'object' || h === null) return {refuse: 'hello is not an object'}
  if (h.proto !== F.ROUTE_PROTOCOL) return {refuse: `protocol ${String(h.proto)}, not ${F.ROUTE_PROTOCOL}`}
  if (h.version !== own.version) return {refuse: `version ${String(h.version)}, not ${own.version}`}
  if (h.root !== own.root) return {refuse: 'another state dir'}
  if (typeof h.stdin !== 'boolean') return {refuse: 'bad stdin'}
  if (typeof h.env !== 'object' || h.env === null || JSON.stringify(routeEnv(h.env as NodeJS.ProcessEnv)) !== JSON.stringify(routeEnv(own.env))) return {refuse: 'another AGENT_* environment'}
  if (!Array.isArray(h.argv) || !h.argv.every((a) => typeof a === 'string')) return {refuse: 'bad argv'}
  const req = routableRequest(h.argv)
  if (!req) return {refuse: 'not a routed command line'}
  return {hello: h as RouteHello, req}
}

export async function openServeRoute(ctx: ServiceContext, o: {path: string; version: string; env?: NodeJS.ProcessEnv}): Promise<ServeRoute> {
  const env = o.env ?? process.env
  const sockets = new Set<Socket>()
  let served = 0
  const server = createServer((sock) => {
    sockets.add(sock)
    sock.on('close', () => sockets.delete(sock))
    connection(sock)
  })

  function connection(sock: Socket): void {
    const reader = new F.FrameReader(F.FROM_CLIENT)
    let phase: 'hello' | 'ready' | 'running' | 'done' = 'hello'
    let req: RoutedRequest | undefined
    let stdin: PassThrough | undefined
    let wantStdin = false
    let inflight = 0
    const abort = new AbortController()
    const timer = setTimeout(() => sock.destroy(), HELLO_MS)
    /** Whether the socket takes more now (false: the client reads slower than the command writes). */
    const send = (type: typeof F.STDOUT | typeof F.STDERR, data: Buffer | string): boolean => {
      if (sock.destroyed || !sock.writable || data.length === 0) return true
      let more = true
      for (const f of F.dataFrames(type, typeof data === 'string' ? Buffer.from(data, 'utf8') : data)) more = sock.write(f) && more
      return more
    }
    // The command's output, held back while the client's socket is full (the launcher stops reading
    // the guest, ExecRequest.onOutput): one wait shared by every chunk until it drains or closes.
    let full: Promise<void> | undefined
    const output = (stream: 'stdout' | 'stderr', chunk: Buffer): Promise<void> | undefined => {
      if (send(stream === 'stdout' ? F.STDOUT : F.STDERR, chunk)) return undefined
      full ??= drainedOrClosed(sock).then(() => {
        full = undefined
      })
      return full
    }
    const cons = {level: 'info' as const, write: (line: string) => send(F.STDERR, line)}
    sock.on('error', () => undefined)
    sock.on('close', () => {
      clearTimeout(timer)
      stdin?.destroy()
      // The client is gone (killed, or its second Ctrl-C): stop its command, as a dying CLI would.
      if (phase === 'running' && !abort.signal.aborted) abort.abort(new AgentError('interrupted', 'interrupted: the client went away'))
    })
    sock.on('data', (b: Buffer) => {
      let got: ReturnType<F.FrameReader['push']>
      try {
        got = reader.push(b)
      } catch (err) {
        logger().debug(`serve route: dropping a client: ${errorMessage(err)}`)
        return void sock.destroy()
      }
      for (const f of got) {
        if (sock.destroyed) return
        try {
          frame(f)
        } catch (err) {
          // Nothing a client sends may take the server down.
          logger().debug(`serve route: dropping a client: ${errorMessage(err)}`)
          return void sock.destroy()
        }
      }
    })

    function frame(f: {type: number; payload: Buffer}): void {
      if (phase === 'hello') {
        if (f.type !== F.HELLO) return void sock.destroy()
        const c = checkHello(f.payload, {version: o.version, root: ctx.paths.root, env})
        if ('refuse' in c) {
          logger().debug(`serve route: refused a client: ${c.refuse}`)
          // The reason may quote the client's bytes: cut to the frame's bound.
          return void sock.end(F.encodeFrame(F.REFUSE, Buffer.from(c.refuse, 'utf8').subarray(0, 1024)))
        }
        req = c.req
        wantStdin = c.hello.stdin && req.kind === 'exec' && !req.json
        phase = 'ready'
        sock.write(F.encodeFrame(F.READY))
        return
      }
      if (phase === 'ready') {
        if (f.type !== F.GO) return void sock.destroy()
        clearTimeout(timer)
        phase = 'running'
        if (wantStdin) stdin = new PassThrough()
        void run(req!)
        return
      }
      if (phase !== 'running') return
      if (f.type === F.STDIN) {
        // The client keeps at most STDIN_WINDOW bytes unacknowledged (give or take one read); one
        // that sends far more is hostile.
        inflight += f.payload.length
        if (inflight > 2 * F.STDIN_WINDOW) return void sock.destroy()
        if (!stdin || stdin.writableEnded) return
        // Acknowledged once handed on (a PassThrough calls back when its reader has room): a guest
        // that does not read leaves the client's stdin unread, as without a server, while this
        // socket is still read (a signal or the client closing still get through).
        const n = f.payload.length
        stdin.write(f.payload, () => {
          inflight -= n
          if (!sock.destroyed && sock.writable) sock.write(F.ackFrame(n))
        })
      } else if (f.type === F.STDIN_END) {
        stdin?.end()
      } else if (f.type === F.SIGNAL) {
        const sig = f.payload.toString('latin1')
        if (!SIGNALS.has(sig) || abort.signal.aborted) return
        // The words and the error of base-command.ts's first-signal handler.
        withConsole(cons, () => logger().warn(`${sig}: stopping in-flight work (press Ctrl-C again to exit at once)`))
        abort.abort(new AgentError('interrupted', `interrupted by ${sig}`))
      }
    }

    async function run(r: RoutedRequest): Promise<void> {
      const t0 = performance.now()
      const n = ++served
      logger().debug(`serve route: vm ${r.kind === 'exec' ? r.command : 'list'} (request ${n})`)
      const rctx: ServiceContext = {...ctx, signal: abort.signal}
      let code = 0
      try {
        code = await withConsole(cons, () => runRoutedCommand(rctx, r, {stdout: (s) => void send(F.STDOUT, s), stdio: {stdin, output}}))
      } catch (err) {
        const out = errorOutput(err as Error, {json: r.json, debug: false})
        send(F.STDOUT, out.stdout)
        send(F.STDERR, out.stderr)
        code = out.code
      }
      phase = 'done'
      logger().debug(`serve route: request ${n} exit ${code} after ${Math.round(performance.now() - t0)} ms`)
      stdin?.destroy()
      if (!sock.destroyed) sock.end(F.exitFrame(code))
    }
  }

  rmSync(o.path, {force: true})
  await new Promise<void>((ok, fail) => {
    server.once('error', fail)
    server.listen({path: o.path}, () => {
      server.off('error', fail)
      ok()
    })
  })
  chmodSync(o.path, 0o600)
  let closing: Promise<void> | undefined
  return {
    path: o.path,
    served: () => served,
    close: () =>
      (closing ??= new Promise<void>((done) => {
        server.close(() => done())
        for (const s of sockets) s.destroy()
      }).finally(() => rmSync(o.path, {force: true}))),
  }
}
