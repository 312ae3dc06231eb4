/**
 * One timer per sandbox id that ends its lifetime: the API server's sandboxes and MCP's share it;
 * what expiry does is theirs. Timers are unref'd so they never keep the process alive.
 */
export class Lifetimes {
  private readonly timers = new Map<string, NodeJS.Timeout>()

  constructor(private readonly onExpire: (id: string) => void) {}

  /** (Re)arms `id` to expire at `endAt` (ms since the epoch); a time already past expires at once. */
  arm(id: string, endAt: number): void {
    this.disarm(id)
    // setTimeout holds at most ~24.8 days; lifetimes are at most one day.
    const t = setTimeout(() => {
      this.timers.delete(id)
      this.onExpire(id)
    }, Math.max(0, endAt - Date.now()))
    t.unref()
    this.timers.set(id, t)
  }

  disarm(id: string): void {
    clearTimeout(this.timers.get(id))
    this.timers.delete(id)
  }

  clear(): void {
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
  }
}
