import {readFileSync} from 'node:fs'

/** The last `n` non-empty lines of a program's output, joined by " | " (buildah's log prefixes dropped). */
export function lastLines(s: string, n = 3): string {
  return s
    .trim()
    .split('\n')
    .map((l) => l.replace(/^time="[^"]*" level=\w+ msg=/, '').trim())
    .filter(Boolean)
    .slice(-n)
    .join(' | ')
}

/** lastLines of a log file a program wrote; '' when there is none. */
export function lastLinesOfFile(path: string, n = 3): string {
  try {
    return lastLines(readFileSync(path, 'utf8'), n)
  } catch {
    return ''
  }
}

/** Keeps the last `max` bytes of a stream (for error messages about a program that failed). */
export class TailBuffer {
  private buf = Buffer.alloc(0)
  constructor(private readonly max = 64 * 1024) {}
  push(b: Buffer): void {
    this.buf = Buffer.concat([this.buf, b])
    if (this.buf.length > this.max) this.buf = this.buf.subarray(this.buf.length - this.max)
  }
  toString(): string {
    return this.buf.toString('utf8')
  }
}

/** Keeps the first `max` bytes of a guest's output stream; the rest is dropped and flagged. */
export class CappedOutput {
  private chunks: Buffer[] = []
  private size = 0
  truncated = false
  constructor(private readonly max: number) {}

  push(b: Buffer): void {
    const room = this.max - this.size
    if (room <= 0) {
      if (b.length) this.truncated = true
      return
    }
    const part = b.length > room ? b.subarray(0, room) : b
    if (part.length < b.length) this.truncated = true
    // A copy: the stream may reuse its buffer.
    this.chunks.push(Buffer.from(part))
    this.size += part.length
  }

  text(): string {
    return Buffer.concat(this.chunks).toString('utf8')
  }
}
