/**
 * Waiting for a condition instead of sleeping a fixed time: a fixed sleep that is long enough on
 * a quiet machine is too short on a loaded 2-core one. Polls `check` until it holds or `timeoutMs`
 * passes; returns whether it held.
 */
export async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs = 30_000, everyMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (Date.now() >= end) return false
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

