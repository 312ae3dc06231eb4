/**
 * envd's filesystem calls, done inside the guest: each call is one exec of a small POSIX shell
 * script with the paths as positional parameters. The guest kernel resolves every path inside
 * the sandbox's own root, so `..`, absolute paths and symlinks cannot reach the host; nothing
 * here opens a guest path on the host. (The VM's root filesystem is also on the host, but
 * resolving guest paths there safely would need no-follow confinement at every component; an
 * exec costs about as much as one runsc exec and needs none of that.)
 */
import {posix} from 'node:path'
import type {Readable} from 'node:stream'
import {randomBytes} from 'node:crypto'
import {Code, ConnectError} from '@connectrpc/connect'
import type {ServiceContext, VmRecord} from './floor.js'
import {runInGuest, scriptCommand} from './guest.js'

/** Exit codes of the helper scripts. */
const E_NOENT = 44
const E_EXIST = 45
const E_NOTDIR = 46
const E_ISDIR = 47
const E_TOOBIG = 48

/** name, type, size, mode (octal), permissions, owner, group, mtime (epoch s), symlink target: NUL-terminated. */
const FMT = String.raw`%p\0%y\0%s\0%m\0%M\0%u\0%g\0%T@\0%l\0`
const FIELDS = 9

export type GuestFileType = 'file' | 'dir' | 'symlink' | 'other'

export interface GuestEntry {
  name: string
  path: string
  type: GuestFileType
  size: bigint
  mode: number
  permissions: string
  owner: string
  group: string
  modified: Date
  symlinkTarget?: string
}

const EXISTS = `[ -e "$1" ] || [ -L "$1" ] || { echo "no such file or directory: $1" >&2; exit ${E_NOENT}; }`

function parseEntries(out: Buffer): GuestEntry[] {
  const parts = out.toString('utf8').split('\0')
  const entries: GuestEntry[] = []
  for (let i = 0; i + FIELDS <= parts.length; i += FIELDS) {
    const [p, y, size, mode, perms, owner, group, mtime, link] = parts.slice(i, i + FIELDS)
    const type: GuestFileType = y === 'f' ? 'file' : y === 'd' ? 'dir' : y === 'l' ? 'symlink' : 'other'
    entries.push({
      name: posix.basename(p) || p,
      path: p,
      type,
      size: BigInt(size || '0'),
      mode: parseInt(mode || '0', 8),
      permissions: perms,
      owner,
      group,
      modified: new Date(Math.round(Number(mtime) * 1000)),
      symlinkTarget: type === 'symlink' ? link : undefined,
    })
  }
  return entries
}

function fail(code: number, stderr: string, path: string): never {
  const msg = stderr.trim() || `exit ${code}`
  if (code === E_NOENT) throw new ConnectError(`path not found: ${path}`, Code.NotFound)
  if (code === E_EXIST) throw new ConnectError(`path already exists: ${path}`, Code.AlreadyExists)
  if (code === E_NOTDIR) throw new ConnectError(`path is not a directory: ${path}`, Code.InvalidArgument)
  if (code === E_ISDIR) throw new ConnectError(`path is a directory: ${path}`, Code.InvalidArgument)
  throw new ConnectError(`filesystem operation on ${path} failed: ${msg}`, Code.Internal)
}

export class GuestFs {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly vm: VmRecord,
  ) {}

  private async run(script: string, args: string[], o: {stdin?: Readable; onStdout?: (b: Buffer) => void; timeoutSec?: number; signal?: AbortSignal} = {}): Promise<{code: number; stdout: Buffer; stderr: string}> {
    const chunks: Buffer[] = []
    const r = await runInGuest(this.ctx, this.vm, {
      cmd: scriptCommand(script, args),
      stdin: o.stdin,
      timeoutSec: o.timeoutSec ?? 60,
      signal: o.signal,
      onOutput: (s, b) => {
        if (s !== 'stdout') return
        if (o.onStdout) o.onStdout(b)
        else chunks.push(b)
      },
    })
    return {code: r.exitCode, stdout: Buffer.concat(chunks), stderr: r.stderr}
  }

  async stat(path: string): Promise<GuestEntry> {
    const r = await this.run(`${EXISTS}\nexec find "$1" -maxdepth 0 -printf '${FMT}'`, [path])
    if (r.code !== 0) fail(r.code, r.stderr, path)
    return parseEntries(r.stdout)[0]
  }

  async list(path: string, depth: number): Promise<GuestEntry[]> {
    const d = Math.max(1, Math.min(depth || 1, 64))
    const r = await this.run(`${EXISTS}\n[ -d "$1" ] || exit ${E_NOTDIR}\nexec find "$1/" -mindepth 1 -maxdepth ${d} -printf '${FMT}'`, [path])
    if (r.code !== 0) fail(r.code, r.stderr, path)
    return parseEntries(r.stdout).map((e) => ({...e, path: posix.normalize(e.path)}))
  }

  async makeDir(path: string): Promise<GuestEntry> {
    const r = await this.run(`if [ -e "$1" ] || [ -L "$1" ]; then exit ${E_EXIST}; fi\nmkdir -p -- "$1" || exit 1\nexec find "$1" -maxdepth 0 -printf '${FMT}'`, [path])
    if (r.code !== 0) fail(r.code, r.stderr, path)
    return parseEntries(r.stdout)[0]
  }

  async move(source: string, destination: string): Promise<GuestEntry> {
    const r = await this.run(`${EXISTS}\nmkdir -p -- "$(dirname -- "$2")" && mv -f -T -- "$1" "$2" || exit 1\nexec find "$2" -maxdepth 0 -printf '${FMT}'`, [source, destination])
    if (r.code !== 0) fail(r.code, r.stderr, source)
    return parseEntries(r.stdout)[0]
  }

  async remove(path: string): Promise<void> {
    const r = await this.run(`${EXISTS}\nexec rm -rf -- "$1"`, [path])
    if (r.code !== 0) fail(r.code, r.stderr, path)
  }

  /** A file's bytes; at most maxBytes (else a "too big" error, status 413). */
  async read(path: string, maxBytes: number): Promise<Buffer> {
    const chunks: Buffer[] = []
    let size = 0
    const ac = new AbortController()
    let tooBig = false
    const r = await this.run(
      `${EXISTS}\n[ -d "$1" ] && exit ${E_ISDIR}\n[ "$(stat -L -c %s -- "$1")" -le ${maxBytes} ] || exit ${E_TOOBIG}\nexec cat -- "$1"`,
      [path],
      {
        signal: ac.signal,
        timeoutSec: 600,
        onStdout: (b) => {
          size += b.length
          if (size > maxBytes) {
            tooBig = true
            ac.abort()
          } else chunks.push(b)
        },
      },
    )
    if (tooBig || r.code === E_TOOBIG) throw Object.assign(new Error(`file ${path} is larger than the ${maxBytes}-byte download limit`), {statusCode: 413})
    if (r.code !== 0) fail(r.code, r.stderr, path)
    return Buffer.concat(chunks)
  }

  /**
   * Writes a file from a stream: into a temporary name next to it, renamed into place only when
   * the whole body arrived, so a failed or oversized upload leaves nothing behind.
   */
  async write(path: string, body: Readable, signal?: AbortSignal): Promise<void> {
    const tmp = `${path}.agent-upload-${randomBytes(4).toString('hex')}`
    const r = await this.run(
      `[ -d "$1" ] && exit ${E_ISDIR}\nmkdir -p -- "$(dirname -- "$1")" || exit 1\ncat > "$2" || { rm -f -- "$2"; exit 1; }\nexec mv -f -- "$2" "$1"`,
      [path, tmp],
      {stdin: body, timeoutSec: 600, signal},
    )
    if (r.code !== 0 || signal?.aborted) {
      await this.run('rm -f -- "$1"', [tmp]).catch(() => undefined)
      if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('upload aborted')
      fail(r.code, r.stderr, path)
    }
  }
}
