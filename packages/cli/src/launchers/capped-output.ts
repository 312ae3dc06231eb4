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
