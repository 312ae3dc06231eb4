/**
 * Holds a command's output back while whoever takes it is full, so that memory stays bounded and
 * the guest in turn blocks on its own output: a slow reader of our stdout, or an ExecRequest
 * consumer (agent serve's route to a client that reads slowly). Each hold is a promise; the
 * source is paused at the first and resumed when the last settles. At most one 'drain' listener
 * waits per stream (chunks already read keep arriving after the pause).
 */
export class OutputGate {
  private holds = 0
  private readonly draining = new Set<NodeJS.WritableStream>()

  constructor(
    private readonly pause: () => void,
    private readonly resume: () => void,
  ) {}

  /** Writes to a stream; when it is full, holds until it drains. */
  write(w: NodeJS.WritableStream, b: Buffer): void {
    if (w.write(b) || this.draining.has(w)) return
    this.draining.add(w)
    this.hold(new Promise<void>((r) => w.once('drain', () => r())).finally(() => this.draining.delete(w)))
  }

  /** Holds until `p` settles, when it is a promise (what ExecRequest.onOutput returned). */
  hold(p: unknown): void {
    if (typeof (p as PromiseLike<unknown> | undefined)?.then !== 'function') return
    if (this.holds++ === 0) this.pause()
    const done = () => {
      if (--this.holds === 0) this.resume()
    }
    ;(p as PromiseLike<unknown>).then(done, done)
  }
}
