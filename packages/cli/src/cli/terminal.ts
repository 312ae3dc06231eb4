import type {WriteStream} from 'node:tty'
import {usageError} from '../errors.js'
import {logger} from '../logging/logger.js'
import {start} from '../system/index.js'
import type {ExecRequest, TtySize} from '../launchers/launcher.js'

/**
 * The host terminal of `vm exec -t` and `vm shell`: its size, its resizes, and raw mode (so that
 * ^C, ^D, ^Z and every other key reach the guest's PTY as bytes instead of acting on agent).
 */
export interface HostTerminal {
  size: TtySize
  /** For ExecRequest.onResize: calls `resize` with the new size on every SIGWINCH. */
  onResize: NonNullable<ExecRequest['onResize']>
  /** Leaves raw mode (idempotent); also done when the process exits any other way. */
  restore(): void
}

/** Like `docker exec -t`: a PTY needs the caller's stdin to be a terminal. */
export function requireTerminal(what: string, hint: string): void {
  if (!process.stdin.isTTY) throw usageError(`${what} needs a terminal, but stdin is not one`, hint)
}

/** The terminal whose size the guest's PTY takes: stdout, else stderr (stdout may be piped). */
function sizedStream(): WriteStream | undefined {
  if (process.stdout.isTTY) return process.stdout
  if (process.stderr.isTTY) return process.stderr
  return undefined
}

function sizeOf(s: WriteStream | undefined): TtySize {
  return {rows: s?.rows || 24, cols: s?.columns || 80}
}

/** Takes the terminal; raw mode only when stdin goes to the guest (`-i`). */
export async function takeTerminal(raw: boolean): Promise<HostTerminal> {
  const out = sizedStream()
  let restored = !raw
  const restore = () => {
    if (restored) return
    restored = true
    process.off('exit', restore)
    try {
      process.stdin.setRawMode(false)
    } catch {
      // stdin already closed: nothing to restore
    }
  }
  if (raw) {
    // Every way out of the process (an error thrown past us, process.exit) leaves raw mode too.
    process.once('exit', restore)
    process.stdin.setRawMode(true)
    // Node's raw mode keeps output processing (ONLCR): the guest's PTY has already made each
    // newline \r\n, and a full-screen program there moves the cursor down with a bare \n. Off, as
    // docker does; leaving raw mode puts back the terminal's settings as they were, this included.
    const r = await start('stty', ['-opost'], {stdin: 'inherit'})
    if (r.exitCode !== 0) logger().debug(`stty -opost: ${r.exitCode ?? r.signal ?? 'did not run'}; newlines may show doubled`)
  }
  return {
    size: sizeOf(out),
    onResize: (resize) => {
      if (!out) return () => undefined
      const on = () => resize(sizeOf(out))
      out.on('resize', on)
      return () => void out.off('resize', on)
    },
    restore,
  }
}
