/**
 * The framing of agent serve's route socket (<state>/serve.sock): a 1-byte type, a 4-byte
 * big-endian length, the payload. Both ends treat the other's bytes as hostile: an unknown type
 * or a length above the type's bound is a protocol error, never an allocation.
 * Only node: builtins here: the CLI's fast path loads this before anything else.
 */

/** Client to server. */
export const HELLO = 1
export const GO = 2
export const STDIN = 3
export const STDIN_END = 4
export const SIGNAL = 5
/** Server to client. */
export const READY = 16
export const REFUSE = 17
export const STDOUT = 18
export const STDERR = 19
export const EXIT = 20
/** Stdin bytes the server has handed on: the client may send that many more (STDIN_WINDOW). */
export const STDIN_ACK = 21

/** Stdin bytes the client may have in flight, unacknowledged: the server's buffer for a guest that does not read. */
export const STDIN_WINDOW = 256 * 1024

/** Bumped whenever a frame's meaning changes; both ends must agree. */
export const ROUTE_PROTOCOL = 1

/** Largest payload per type: data frames are chunked by the writer, control frames are small. */
const MAX: Record<number, number> = {
  [HELLO]: 256 * 1024,
  [GO]: 0,
  [STDIN]: 64 * 1024,
  [STDIN_END]: 0,
  [SIGNAL]: 16,
  [READY]: 0,
  [REFUSE]: 1024,
  [STDOUT]: 64 * 1024,
  [STDERR]: 64 * 1024,
  [EXIT]: 4,
  [STDIN_ACK]: 4,
}
export const MAX_DATA_FRAME = 64 * 1024

export interface Frame {
  type: number
  payload: Buffer
}

export class FrameError extends Error {}

/** One frame; a data payload larger than a frame's bound is the writer's job to chunk (dataFrames). */
export function encodeFrame(type: number, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload
  const max = MAX[type]
  if (max === undefined) throw new FrameError(`unknown frame type ${type}`)
  if (body.length > max) throw new FrameError(`frame type ${type} too large (${body.length} > ${max} bytes)`)
  const head = Buffer.allocUnsafe(5)
  head.writeUInt8(type, 0)
  head.writeUInt32BE(body.length, 1)
  return Buffer.concat([head, body])
}

/** Data split into frames of at most MAX_DATA_FRAME bytes. */
export function dataFrames(type: typeof STDIN | typeof STDOUT | typeof STDERR, data: Buffer): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < data.length; i += MAX_DATA_FRAME) out.push(encodeFrame(type, data.subarray(i, i + MAX_DATA_FRAME)))
  return out
}

export function exitFrame(code: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeInt32BE(code, 0)
  return encodeFrame(EXIT, b)
}

export function ackFrame(bytes: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(bytes, 0)
  return encodeFrame(STDIN_ACK, b)
}

export function ackedBytes(f: Frame): number {
  if (f.payload.length !== 4) throw new FrameError('ack frame without a count')
  return f.payload.readUInt32BE(0)
}

export function exitCodeOf(f: Frame): number {
  if (f.payload.length !== 4) throw new FrameError('exit frame without a code')
  const code = f.payload.readInt32BE(0)
  if (code < 0 || code > 255) throw new FrameError(`exit code ${code} out of range`)
  return code
}

/**
 * Incremental decoder. `allowed` is the set of types this end may receive: anything else, or a
 * length over the bound, throws (the caller drops the connection). Buffered bytes never exceed
 * one frame's bound plus one read.
 */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0)

  constructor(private readonly allowed: ReadonlySet<number>) {}

  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk
    const frames: Frame[] = []
    while (this.buf.length >= 5) {
      const type = this.buf.readUInt8(0)
      const len = this.buf.readUInt32BE(1)
      if (!this.allowed.has(type)) throw new FrameError(`unexpected frame type ${type}`)
      if (len > MAX[type]!) throw new FrameError(`frame type ${type} too large (${len} > ${MAX[type]} bytes)`)
      if (this.buf.length < 5 + len) break
      // A copy: the payload must not pin (or alias) the whole read buffer.
      frames.push({type, payload: Buffer.from(this.buf.subarray(5, 5 + len))})
      this.buf = this.buf.subarray(5 + len)
    }
    return frames
  }

  /** Bytes of an unfinished frame (a connection ending here ended mid-frame). */
  get pending(): number {
    return this.buf.length
  }
}

export const FROM_CLIENT: ReadonlySet<number> = new Set([HELLO, GO, STDIN, STDIN_END, SIGNAL])
export const FROM_SERVER: ReadonlySet<number> = new Set([READY, REFUSE, STDOUT, STDERR, EXIT, STDIN_ACK])
