/**
 * The CLI's side of agent serve's route: when a server runs for this state dir, `vm exec`,
 * `vm run` and `vm list` are handed to it over <state>/serve.sock, and this process only relays
 * stdin, stdout, stderr and the exit code (bin/run.js calls tryServeRoute before loading oclif).
 * undefined means "not handled, nothing written": no socket, a stale one, a server of another
 * version, state dir or AGENT_* environment, or a command line the route does not take.
 * Only node: builtins: this runs before anything else is loaded.
 */
import {readFileSync, statSync} from 'node:fs'
import {connect, type Socket} from 'node:net'
import {join} from 'node:path'
import {isatty} from 'node:tty'
import {ackedBytes, dataFrames, encodeFrame, exitCodeOf, FROM_SERVER, FrameReader, GO, HELLO, MAX_DATA_FRAME, READY, ROUTE_PROTOCOL, SIGNAL, STDERR, STDIN, STDIN_ACK, STDIN_END, STDIN_WINDOW, STDOUT, EXIT, type Frame} from './frames.js'
import {defaultRendering, routableRequest, routeEnv, type RouteHello} from './route-request.js'
import {resolveStateDir} from './state-root.js'

/** How long a server may take to accept or refuse before the CLI goes its own way. */
const HANDSHAKE_MS = 3000

function cliVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {version: string}).version
}

/** The hello for `agent <argv>`, or undefined when the route does not apply. */
export function routeHello(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, stdinIsTty = isatty(0)): RouteHello | undefined {
  if (env.AGENT_SERVE_ROUTE === 'off') return undefined
  // The route renders at the default level without a log file, as a plain command would.
  if (!defaultRendering(env)) return undefined
  const req = routableRequest(argv)
  if (!req) return undefined
  // A single streamed exec reads stdin unless it is a terminal (vm exec without -i); --json never does.
  const stdin = req.kind === 'exec' && !req.json && !stdinIsTty
  return {proto: ROUTE_PROTOCOL, version: cliVersion(), root: resolveStateDir(env), argv: [...argv], env: routeEnv(env), stdin}
}

/**
 * Runs `agent <argv>` through a running agent serve. A number: the command ran there, its output
 * has been written here, exit with it. undefined: nothing happened, take the normal path.
 */
export async function tryServeRoute(argv: readonly string[]): Promise<number | undefined> {
  let hello: RouteHello | undefined
  let path: string
  try {
    // The common case, no server: one stat, nothing else read.
    path = join(resolveStateDir(), 'serve.sock')
    if (process.env.AGENT_SERVE_ROUTE === 'off' || !statSync(path, {throwIfNoEntry: false})?.isSocket()) return undefined
    hello = routeHello(argv)
  } catch {
    return undefined
  }
  if (!hello) return undefined
  const sock = await accepted(path, hello)
  if (!sock) return undefined
  return relay(sock.socket, sock.reader, sock.early, hello.stdin)
}

/** Connects and says hello; the socket once the server said READY, else undefined (and closed). */
function accepted(path: string, hello: RouteHello): Promise<{socket: Socket; reader: FrameReader; early: Frame[]} | undefined> {
  return new Promise((done) => {
    const reader = new FrameReader(FROM_SERVER)
    const socket = connect({path})
    let settled = false
    const give = (v: {socket: Socket; reader: FrameReader; early: Frame[]} | undefined) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.off('data', onData)
      if (!v) socket.destroy()
      done(v)
    }
    const timer = setTimeout(() => give(undefined), HANDSHAKE_MS)
    const onData = (b: Buffer) => {
      let frames: Frame[]
      try {
        frames = reader.push(b)
      } catch {
        return give(undefined)
      }
      if (frames.length === 0) return
      if (frames[0]!.type !== READY) return give(undefined)
      socket.pause()
      give({socket, reader, early: frames.slice(1)})
    }
    socket.on('error', () => give(undefined))
    socket.on('close', () => give(undefined))
    socket.on('data', onData)
    socket.once('connect', () => {
      try {
        socket.write(encodeFrame(HELLO, JSON.stringify(hello)))
      } catch {
        give(undefined)
      }
    })
  })
}

/** From GO on the command is the server's: relay until its exit frame. */
function relay(socket: Socket, reader: FrameReader, early: Frame[], streamStdin: boolean): Promise<number> {
  return new Promise((done) => {
    let finished = false
    let signals = 0
    let inflight = 0
    let stdinPaused = false
    const finish = (code: number) => {
      if (finished) return
      finished = true
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
      if (streamStdin) process.stdin.pause()
      socket.destroy()
      // Exit once what we were given is written (bin/run.js exits with the code).
      process.stdout.write('', () => process.stderr.write('', () => done(code)))
    }
    // As the normal path: the first signal stops the command (the server says how it ended), a second exits at once.
    const onSignal = (sig: NodeJS.Signals) => {
      if (++signals > 1) {
        socket.destroy()
        process.exit(130)
      }
      socket.write(encodeFrame(SIGNAL, sig))
      // base-command.ts's deadline for in-flight work to stop after the first signal.
      setTimeout(() => {
        socket.destroy()
        process.exit(130)
      }, 30_000).unref()
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)

    // A reader that went away (`agent vm exec ... | head -1`): its output is dropped and the command
    // runs on, as oclif's EPIPE handler makes the normal path do.
    const gone = new Set<NodeJS.WriteStream>()
    const waiting = new Set<NodeJS.WriteStream>()
    for (const out of [process.stdout, process.stderr]) {
      out.on('error', () => {
        gone.add(out)
        waiting.delete(out)
        if (waiting.size === 0) socket.resume()
      })
    }
    const handle = (f: Frame) => {
      if (f.type === STDOUT || f.type === STDERR) {
        const out = f.type === STDOUT ? process.stdout : process.stderr
        if (gone.has(out)) return
        // A slow reader of our output slows the server's sending, not our memory.
        // One 'drain' listener per stream (frames of one chunk keep coming after the pause).
        if (!out.write(f.payload) && !waiting.has(out)) {
          waiting.add(out)
          socket.pause()
          out.once('drain', () => {
            waiting.delete(out)
            if (waiting.size === 0) socket.resume()
          })
        }
      } else if (f.type === STDIN_ACK) {
        inflight -= ackedBytes(f)
        if (inflight < STDIN_WINDOW && stdinPaused && !finished) {
          stdinPaused = false
          process.stdin.resume()
        }
      } else if (f.type === EXIT) {
        finish(exitCodeOf(f))
      } else throw new Error(`unexpected frame ${f.type}`)
    }
    const broken = () => {
      if (finished) return
      process.stderr.write('Error: agent serve stopped before the command ended\nHint: run it again; without a server agent runs it itself\n')
      finish(5)
    }
    socket.on('data', (b: Buffer) => {
      try {
        for (const f of reader.push(b)) handle(f)
      } catch {
        broken()
      }
    })
    socket.on('error', broken)
    socket.on('close', broken)
    try {
      for (const f of early) handle(f)
    } catch {
      broken()
    }
    socket.write(encodeFrame(GO))
    socket.resume()

    if (streamStdin && !finished) {
      const stdin = process.stdin
      stdin.on('data', (b: Buffer) => {
        if (finished) return
        // At most STDIN_WINDOW bytes unacknowledged: the server holds no more than that for a
        // guest that does not read (a chunk is at most 64 KiB, so the window is never passed).
        for (const frame of dataFrames(STDIN, b)) socket.write(frame)
        inflight += b.length
        if (inflight >= STDIN_WINDOW - MAX_DATA_FRAME && !stdinPaused) {
          stdinPaused = true
          stdin.pause()
        }
      })
      stdin.once('end', () => !finished && socket.write(encodeFrame(STDIN_END)))
      stdin.once('error', () => !finished && socket.write(encodeFrame(STDIN_END)))
    }
  })
}
