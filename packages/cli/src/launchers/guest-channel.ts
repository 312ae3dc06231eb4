/**
 * The host side of agent-init's exec channel (protocol: guest/README.md). One connection runs
 * at most one command; concurrent execs are separate connections, served by separate guest
 * processes.
 *
 * Everything that arrives from the guest is hostile input: guest code runs as root in the VM
 * and can replace the socket with its own server. So:
 *  - the socket is opened with O_PATH|O_NOFOLLOW and must be a socket inode: a symlink the
 *    guest planted in its channel dir cannot point the host at a host socket;
 *  - the path is derived from the VM id the host already holds, never from guest data;
 *  - every frame is bounded (MAX_GUEST_FRAME) before it is buffered, every type and size is
 *    checked, values are range-checked, and nothing the guest sends is used as a path or an id;
 *  - a violation ends the connection (which, for a real agent-init, kills the command).
 */
import {closeSync, fstatSync, openSync, constants as fsConstants} from 'node:fs'
import {connect, type Socket} from 'node:net'
import {join} from 'node:path'
import {drainedOrClosed} from '../util/drained.js'
import {diskLayout} from './disk.js'
import {GUEST_CHANNEL_DIR, GUEST_CHANNEL_SOCKET} from './oci-spec.js'

export const CHANNEL_VERSION = 1
/** Largest payload accepted from the guest (agent-init sends at most 32 KiB of output per frame). */
export const MAX_GUEST_FRAME = 64 * 1024
/** Largest payload agent-init accepts (an EXEC carrying a long script). */
export const MAX_HOST_FRAME = 1024 * 1024
export {GUEST_CHANNEL_DIR, GUEST_CHANNEL_SOCKET}

/** The host dir bind-mounted at GUEST_CHANNEL_DIR: on the VM's bounded disk, so guest files there are bounded too. */
export function channelHostDir(vmDir: string): string {
  return join(diskLayout(vmDir).mount, 'chan')
}

export function channelSocketPath(vmDir: string): string {
  return join(channelHostDir(vmDir), 'init.sock')
}

export const T = {
  HELLO: 0x01,
  PING: 0x02,
  EXEC: 0x03,
  STDIN: 0x04,
  STDIN_CLOSE: 0x05,
  SIGNAL: 0x06,
  RESIZE: 0x07,
  HELLO_OK: 0x81,
  PONG: 0x82,
  STARTED: 0x83,
  STDOUT: 0x84,
  STDERR: 0x85,
  EXIT: 0x86,
  ERROR: 0x8f,
} as const

const O_PATH = 0o10000000
const O_CLOEXEC = 0o2000000

/** Why the channel could not be used. `connect`/`hello`: nothing ran, a fallback is safe. */
export class ChannelError extends Error {
  constructor(
    readonly stage: 'connect' | 'hello' | 'protocol' | 'closed',
    message: string,
  ) {
    super(message)
    this.name = 'ChannelError'
  }
}

export function encodeFrame(type: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(5)
  h.writeUInt32BE(payload.length + 1, 0)
  h[4] = type
  return Buffer.concat([h, payload])
}

export interface Frame {
  type: number
  payload: Buffer
}

/** Splits a byte stream into frames; throws a ChannelError('protocol') on a bad length. */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0)
  constructor(private readonly max = MAX_GUEST_FRAME) {}

  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk
    const out: Frame[] = []
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0)
      // Checked before waiting for the rest: a huge length is refused, never buffered.
      if (len < 1 || len > this.max + 1) throw new ChannelError('protocol', `frame length ${len} out of bounds (1..${this.max + 1})`)
      if (this.buf.length < len + 4) break
      out.push({type: this.buf[4]!, payload: Buffer.from(this.buf.subarray(5, len + 4))})
      this.buf = this.buf.subarray(len + 4)
    }
    return out
  }
}

/** A printable, bounded rendering of guest text for a message (never a path or an id). */
export function guestText(b: Buffer, max = 200): string {
  const s = b.subarray(0, max).toString('utf8').replace(/[^\x20-\x7e]/g, '?')
  return b.length > max ? `${s}...` : s
}

export interface ChannelExecSpec {
  argv: readonly string[]
  env?: Readonly<Record<string, string>>
  cwd?: string
  /** uid, uid:gid, or a name in the guest's /etc/passwd. */
  user?: string
  /** The guest kills the whole tree after this long and reports `timeout`; 0 = none. */
  timeoutMs: number
  /** Stream stdin (write()/closeStdin()); otherwise the command gets /dev/null. */
  stdin?: boolean
  pty?: {rows: number; cols: number}
}

export interface ChannelExit {
  reason: 'exit' | 'signal' | 'timeout'
  /** exit: the exit code; signal: the signal number; timeout: 124. */
  code: number
  /** How long the command ran, as the guest measured it. */
  guestMs: number
}

/** Builds an EXEC payload: "<key><value>\0" items (guest/README.md). */
export function encodeExec(spec: ChannelExecSpec): Buffer {
  const items: string[] = []
  const put = (k: string, v: string) => {
    if (v.includes('\0')) throw new ChannelError('protocol', `exec ${k}: NUL byte in a value`)
    items.push(k + v)
  }
  if (!spec.argv.length) throw new ChannelError('protocol', 'exec: empty argv')
  for (const a of spec.argv) put('a', a)
  for (const [k, v] of Object.entries(spec.env ?? {})) {
    if (!k || k.includes('=')) throw new ChannelError('protocol', `exec: bad env name ${JSON.stringify(k)}`)
    put('e', `${k}=${v}`)
  }
  if (spec.cwd) put('c', spec.cwd)
  if (spec.user) put('u', spec.user)
  put('t', String(Math.max(0, Math.round(spec.timeoutMs))))
  if (spec.stdin) put('i', '1')
  if (spec.pty) put('p', `${Math.round(spec.pty.rows)},${Math.round(spec.pty.cols)}`)
  const payload = Buffer.from(items.map((s) => `${s}\0`).join(''), 'utf8')
  if (payload.length > MAX_HOST_FRAME) throw new ChannelError('protocol', `exec request of ${payload.length} bytes exceeds ${MAX_HOST_FRAME}`)
  return payload
}

/** Validates an EXIT payload from the guest. */
export function decodeExit(p: Buffer): ChannelExit {
  if (p.length !== 9) throw new ChannelError('protocol', `exit report of ${p.length} bytes (want 9)`)
  const reason = p[0]
  const code = p.readUInt32BE(1)
  const guestMs = p.readUInt32BE(5)
  if (reason === 0 && code <= 255) return {reason: 'exit', code, guestMs}
  if (reason === 1 && code >= 1 && code <= 64) return {reason: 'signal', code, guestMs}
  if (reason === 2 && code === 124) return {reason: 'timeout', code, guestMs}
  throw new ChannelError('protocol', `exit report with reason ${reason} and code ${code}`)
}

export interface ChannelExecHandlers {
  onStdout?: (b: Buffer) => void
  onStderr?: (b: Buffer) => void
}

/** A running command on the channel. */
export interface ChannelProcess {
  /** Resolves with the guest's exit report; rejects with a ChannelError when the channel breaks. */
  readonly done: Promise<ChannelExit>
  /** Stdin; returns false when the caller should wait for 'drain' (see drain()). */
  write(b: Buffer): boolean
  drain(): Promise<void>
  closeStdin(): void
  signal(sig: number): void
  resize(rows: number, cols: number): void
  /** Stops reading the guest (our consumer is full); agent-init then stops reading the command. */
  pause(): void
  resume(): void
  /** Drops the connection: agent-init kills the command's whole tree. */
  abort(): void
}

export interface OpenOptions {
  /** Connect + hello must complete within this (default 5 s). */
  timeoutMs?: number
  /**
   * Return once connected, with the hello sent but not answered (`ready` settles with it), so
   * that an exec() goes out in the same round trip. Safe: agent-init sends all of HELLO_OK before
   * it looks at an EXEC, so an exec that fails with stage 'hello' never ran.
   */
  pipeline?: boolean
}

/** Opens the channel at `socketPath` (a socket inode; never a symlink) and says hello. */
export async function openChannel(socketPath: string, o: OpenOptions = {}): Promise<GuestChannel> {
  let fd: number
  try {
    fd = openSync(socketPath, O_PATH | O_CLOEXEC | fsConstants.O_NOFOLLOW)
  } catch (err) {
    throw new ChannelError('connect', `no channel socket (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  let sock: Socket
  try {
    if (!fstatSync(fd).isSocket()) throw new ChannelError('connect', 'the channel path is not a socket')
    // Connecting through the O_PATH descriptor reaches exactly the inode checked above.
    sock = connect({path: `/proc/self/fd/${fd}`})
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new ChannelError('connect', 'connect timed out')), o.timeoutMs ?? 5_000)
      sock.once('connect', () => (clearTimeout(t), resolve()))
      sock.once('error', (err: NodeJS.ErrnoException) => (clearTimeout(t), reject(new ChannelError('connect', `connect: ${err.code ?? err.message}`))))
    })
  } catch (err) {
    closeSync(fd)
    throw err
  }
  closeSync(fd)
  const ch = new GuestChannel(sock)
  ch.ready = ch.hello(o.timeoutMs ?? 5_000)
  if (o.pipeline) ch.ready.catch(() => undefined) // surfaces through exec()'s done
  else await ch.ready
  return ch
}

type Waiter = {type: number; check?: (f: Frame) => string | undefined; resolve: (f: Frame) => void; reject: (e: Error) => void}

/** One connection to agent-init. */
export class GuestChannel {
  private readonly decoder = new FrameDecoder()
  private waiter?: Waiter
  private failure?: Error
  private onFrame?: (f: Frame) => void
  private onEnd?: (e: Error) => void
  private used = false
  private helloPending = false
  /** Settles with the hello (openChannel awaits it unless pipelining). */
  ready: Promise<void> = Promise.resolve()
  /** Features agent-init announced (bit 0 pty, 1 signals, 2 user, 3 stdin). */
  features = 0

  constructor(private readonly sock: Socket) {
    sock.on('data', (chunk: Buffer) => {
      let frames: Frame[]
      try {
        frames = this.decoder.push(chunk)
      } catch (err) {
        this.fail(err as Error)
        return
      }
      for (const f of frames) {
        if (this.failure) return
        if (this.waiter) this.settle(f)
        else if (this.onFrame) this.onFrame(f)
        else this.fail(new ChannelError('protocol', `unsolicited frame type 0x${f.type.toString(16)}`))
      }
    })
    sock.on('error', (err: NodeJS.ErrnoException) => this.fail(new ChannelError('closed', `channel: ${err.code ?? err.message}`)))
    sock.on('close', () => this.fail(new ChannelError('closed', 'the guest closed the channel')))
  }

  /** The answer to a request, checked before any frame after it is looked at. */
  private settle(f: Frame): void {
    const w = this.waiter!
    if (f.type === T.ERROR) return this.fail(new ChannelError('protocol', `guest refused: ${guestText(f.payload)}`))
    if (f.type !== w.type) return this.fail(new ChannelError('protocol', `expected frame 0x${w.type.toString(16)}, got 0x${f.type.toString(16)}`))
    const bad = w.check?.(f)
    if (bad) return this.fail(new ChannelError('protocol', bad))
    this.waiter = undefined
    // At once, not when hello() resumes: frames after HELLO_OK in this same chunk belong to an exec that ran.
    if (w.type === T.HELLO_OK) this.helloPending = false
    w.resolve(f)
  }

  private fail(err: Error): void {
    if (this.failure) return
    // Whatever breaks before the hello is answered means nothing ran: say so (stage 'hello').
    if (this.helloPending && !(err instanceof ChannelError && err.stage === 'hello')) err = new ChannelError('hello', err.message)
    this.failure = err
    this.sock.destroy()
    this.waiter?.reject(err)
    this.waiter = undefined
    this.onEnd?.(err)
  }

  private request(type: number, payload: Buffer, want: number, timeoutMs: number, check?: Waiter['check']): Promise<Frame> {
    if (this.failure) return Promise.reject(this.failure)
    if (this.waiter || this.used) return Promise.reject(new ChannelError('protocol', 'channel busy'))
    return new Promise<Frame>((resolve, reject) => {
      const t = setTimeout(() => this.fail(new ChannelError(this.helloPending ? 'hello' : 'closed', `no answer within ${timeoutMs} ms`)), timeoutMs)
      this.waiter = {type: want, check, resolve: (f) => (clearTimeout(t), resolve(f)), reject: (e) => (clearTimeout(t), reject(e))}
      this.sock.write(encodeFrame(type, payload))
    })
  }

  async hello(timeoutMs: number): Promise<void> {
    const p = Buffer.alloc(8)
    p.write('AGCH', 0, 'latin1')
    p.writeUInt16BE(CHANNEL_VERSION, 4)
    p.writeUInt16BE(CHANNEL_VERSION, 6)
    this.helloPending = true
    try {
      const f = await this.request(T.HELLO, p, T.HELLO_OK, timeoutMs, (h) =>
        h.payload.length !== 10 || h.payload.toString('latin1', 0, 4) !== 'AGCH' || h.payload.readUInt16BE(4) !== CHANNEL_VERSION ? 'bad hello from the guest' : undefined,
      )
      this.features = f.payload.readUInt32BE(6)
    } finally {
      // fail() turned any failure meanwhile into stage 'hello' (an exec pipelined behind it never ran).
      this.helloPending = false
    }
  }

  /** Round trip of a frame that spawns nothing; returns milliseconds. */
  async ping(timeoutMs = 5_000): Promise<number> {
    const t0 = performance.now()
    const payload = Buffer.from('ping')
    await this.request(T.PING, payload, T.PONG, timeoutMs, (f) => (f.payload.equals(payload) ? undefined : 'pong does not echo the ping'))
    return performance.now() - t0
  }

  /** Starts one command; the connection is used up by it. */
  exec(spec: ChannelExecSpec, h: ChannelExecHandlers = {}): ChannelProcess {
    if (this.used || (this.waiter && !this.helloPending)) throw new ChannelError('protocol', 'channel busy')
    this.used = true
    const payload = encodeExec(spec)
    let started = false
    const done = new Promise<ChannelExit>((resolve, reject) => {
      if (this.failure) return reject(this.failure)
      this.onEnd = reject
      this.onFrame = (f) => {
        const p = f.payload
        switch (f.type) {
          case T.STARTED:
            if (p.length !== 4 || started) return this.fail(new ChannelError('protocol', 'bad started frame'))
            started = true
            return
          case T.STDOUT:
          case T.STDERR:
            if (!started) return this.fail(new ChannelError('protocol', 'output before started'))
            if (p.length) (f.type === T.STDOUT ? h.onStdout : h.onStderr)?.(p)
            return
          case T.PONG:
            return
          case T.EXIT: {
            let exit: ChannelExit
            try {
              if (!started) throw new ChannelError('protocol', 'exit before started')
              exit = decodeExit(p)
            } catch (err) {
              return this.fail(err as Error)
            }
            this.onEnd = undefined
            this.onFrame = () => undefined // anything after the report is ignored
            this.sock.destroy()
            return resolve(exit)
          }
          case T.ERROR:
            return this.fail(new ChannelError('protocol', `guest refused the command: ${guestText(p)}`))
          default:
            return this.fail(new ChannelError('protocol', `unexpected frame type 0x${f.type.toString(16)}`))
        }
      }
      this.sock.write(encodeFrame(T.EXEC, payload))
    })
    done.catch(() => undefined) // the caller awaits it; never an unhandled rejection
    const send = (type: number, p?: Buffer) => (this.failure || this.sock.destroyed ? true : this.sock.write(encodeFrame(type, p)))
    return {
      done,
      write: (b: Buffer) => {
        let ok = true
        for (let i = 0; i < b.length; i += 32 * 1024) ok = send(T.STDIN, b.subarray(i, i + 32 * 1024)) && ok
        return ok
      },
      drain: () => this.drained(),
      closeStdin: () => void send(T.STDIN_CLOSE),
      signal: (sig: number) => void send(T.SIGNAL, Buffer.from([sig & 0xff])),
      resize: (rows: number, cols: number) => {
        const b = Buffer.alloc(4)
        b.writeUInt16BE(rows & 0xffff, 0)
        b.writeUInt16BE(cols & 0xffff, 2)
        send(T.RESIZE, b)
      },
      pause: () => void this.sock.pause(),
      resume: () => void this.sock.resume(),
      abort: () => this.close(),
    }
  }

  close(): void {
    this.fail(new ChannelError('closed', 'closed by the host'))
  }

  /** Resolves once the socket takes more stdin again (or is gone). */
  private drained(): Promise<void> {
    return !this.sock.writableNeedDrain || this.sock.destroyed ? Promise.resolve() : drainedOrClosed(this.sock)
  }
}
