import {describe, expect, it} from 'vitest'
import {ackedBytes, ackFrame, STDIN_ACK, dataFrames, encodeFrame, exitCodeOf, exitFrame, EXIT, FROM_CLIENT, FROM_SERVER, FrameError, FrameReader, GO, HELLO, MAX_DATA_FRAME, READY, STDIN, STDOUT} from './frames.js'

const head = (type: number, len: number) => {
  const b = Buffer.alloc(5)
  b.writeUInt8(type, 0)
  b.writeUInt32BE(len, 1)
  return b
}

describe('route frames', () => {
  it('decodes frames split at every byte boundary and glued together', () => {
    const wire = Buffer.concat([encodeFrame(HELLO, '{"a":1}'), encodeFrame(GO), ...dataFrames(STDIN, Buffer.from('abc'))])
    const r = new FrameReader(FROM_CLIENT)
    const got = [...wire].flatMap((byte) => r.push(Buffer.from([byte])))
    expect(got.map((f) => [f.type, f.payload.toString()])).toEqual([
      [HELLO, '{"a":1}'],
      [GO, ''],
      [STDIN, 'abc'],
    ])
    expect(r.pending).toBe(0)
    expect(new FrameReader(FROM_CLIENT).push(wire)).toHaveLength(3)
  })

  it('chunks data into frames of at most 64 KiB', () => {
    const data = Buffer.alloc(MAX_DATA_FRAME * 2 + 10, 7)
    const frames = dataFrames(STDOUT, data)
    expect(frames.map((f) => f.length - 5)).toEqual([MAX_DATA_FRAME, MAX_DATA_FRAME, 10])
    const back = new FrameReader(FROM_SERVER).push(Buffer.concat(frames))
    expect(Buffer.concat(back.map((f) => f.payload)).equals(data)).toBe(true)
  })

  it('refuses a length over the type\'s bound from the header alone, before buffering the body', () => {
    const r = new FrameReader(FROM_CLIENT)
    expect(() => r.push(head(STDIN, 0xffffffff))).toThrow(FrameError)
    expect(() => new FrameReader(FROM_CLIENT).push(head(HELLO, 256 * 1024 + 1))).toThrow(/too large/)
    expect(() => new FrameReader(FROM_CLIENT).push(head(GO, 1))).toThrow(/too large/)
    expect(() => encodeFrame(STDOUT, Buffer.alloc(MAX_DATA_FRAME + 1))).toThrow(/too large/)
  })

  it('refuses unknown types and the other direction\'s types', () => {
    expect(() => new FrameReader(FROM_CLIENT).push(head(99, 0))).toThrow(/unexpected frame type 99/)
    expect(() => new FrameReader(FROM_CLIENT).push(encodeFrame(READY))).toThrow(/unexpected frame type/)
    expect(() => new FrameReader(FROM_SERVER).push(encodeFrame(STDIN, 'x'))).toThrow(/unexpected frame type/)
    expect(() => encodeFrame(42)).toThrow(/unknown frame type/)
    expect(() => new FrameReader(FROM_CLIENT).push(ackFrame(1))).toThrow(/unexpected frame type/)
  })

  it('acknowledges stdin in counts of bytes', () => {
    expect(ackedBytes(new FrameReader(FROM_SERVER).push(ackFrame(65_536))[0]!)).toBe(65_536)
    expect(() => new FrameReader(FROM_SERVER).push(Buffer.concat([head(STDIN_ACK, 8), Buffer.alloc(8)]))).toThrow(/too large/)
  })

  it('carries exit codes 0-255 and refuses anything else', () => {
    for (const code of [0, 1, 124, 130, 255]) expect(exitCodeOf(new FrameReader(FROM_SERVER).push(exitFrame(code))[0]!)).toBe(code)
    const bad = Buffer.alloc(4)
    bad.writeInt32BE(-1, 0)
    expect(() => exitCodeOf({type: EXIT, payload: bad})).toThrow(/out of range/)
    expect(() => exitCodeOf({type: EXIT, payload: Buffer.alloc(2)})).toThrow(/without a code/)
  })
})
