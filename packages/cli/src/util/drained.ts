/**
 * Resolves when a full writable drains or closes, whichever comes first, and takes back the other
 * listener: a long stream waits many times on one socket, and leftovers would pile up on it.
 */
export function drainedOrClosed(w: NodeJS.EventEmitter): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      w.off('drain', done)
      w.off('close', done)
      resolve()
    }
    w.once('drain', done).once('close', done)
  })
}
