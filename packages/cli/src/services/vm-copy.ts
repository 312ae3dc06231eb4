/**
 * `agent vm cp`: files and directories between the host and a VM, in the docker cp style, as a
 * tar stream (the `tar` npm package on the host side).
 *
 * Where guest paths are resolved, and why it is safe:
 *  - A running VM: the guest's own `tar` (through the launcher's exec) reads or writes the guest
 *    side, so the guest resolves its own paths and symlinks inside its sandbox; the host never
 *    opens a guest path. (Chosen over reading the VM's disk from the host while it runs: a running
 *    guest can swap a directory for a symlink between any host check and use.)
 *  - A stopped VM: no guest runs, so its files are read through the launcher's host view of them
 *    (stoppedFiles: the root filesystem and the mounts over it). Each guest path is resolved
 *    component by component with lstat, symlinks interpreted inside the guest's root (an absolute
 *    target restarts at the guest's `/`, `..` never climbs above it), like a chroot would; the
 *    resulting host path holds no symlink. Nothing changes under us, since nothing runs.
 *  - Either way, what arrives on the host is extracted by node-tar into the destination only:
 *    every entry must lie under the one name being copied, `..` and absolute paths are refused,
 *    node-tar refuses to write through a symlink (it replaces a link at the leaf and refuses one
 *    on the way), links arrive as links and are never followed. The guest's tar may be hostile:
 *    this is what makes its stream harmless. Owners are not carried to the host (docker cp's rule).
 *  - Host sources are walked first: a symlink anywhere in them is refused (as --file refuses
 *    one), as are devices, fifos and sockets, and the size and entry limits are checked before
 *    anything is sent.
 */
import {lstatSync, readlinkSync} from 'node:fs'
import {basename, dirname, join, posix, resolve} from 'node:path'
import {PassThrough, Transform, type Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import * as tar from 'tar'
import {AgentError, conflict, errorMessage, notFound, usageError} from '../errors.js'
import type {GuestMount} from '../launchers/launcher.js'
import {launcher as launcherByName} from '../launchers/select.js'
import type {VmRecord} from '../state/vm-record.js'
import {checkVmRef} from '../util/validate.js'
import {launchContext, type ServiceContext} from './context.js'
import {execVm} from './vm-exec.js'
import {resolveVm} from './vm-service.js'
import {checkHostSource, hostKind, hostUnpacker} from './vm-copy-host.js'

/** Default limits of one copy; `--max-size` changes the first. */
export const DEFAULT_MAX_BYTES = 1024 * 1024 * 1024
export const MAX_ENTRIES = 100_000
const MAX_LINKS = 40

export type CopyEnd = {vm: string; path: string} | {host: string}

export interface CopyOptions {
  /** Total bytes of the tar stream (file data and headers). */
  maxBytes?: number
  maxEntries?: number
  timeoutSec?: number
}

export interface CopyResult {
  vm: string
  direction: 'in' | 'out'
  /** Where the copy landed: a guest path (in) or a host path (out). */
  target: string
  entries: number
  bytes: number
  /** How the guest side was reached. */
  via: 'guest tar' | 'stopped VM disk'
}

/** `ID:/path` names a VM path; anything starting with `.` or `/`, or without a colon, is a host path (docker's rule). */
export function parseCopyEnd(arg: string): CopyEnd {
  if (arg.includes('\0')) throw usageError('a path must not contain NUL bytes')
  const m = /^([^/.:][^/:]*):(.*)$/.exec(arg)
  if (!m) return {host: arg}
  const [, vm, path] = m
  checkVmRef(vm!, `VM id or name in ${JSON.stringify(arg)}`)
  if (!path!.startsWith('/')) throw usageError(`the path in ${JSON.stringify(arg)} must be absolute (${vm}:/${path})`)
  return {vm: vm!, path: path!}
}

export type Kind = 'dir' | 'file' | 'link' | 'none' | 'noparent'

/** Where a copy lands: a directory that exists, and the name the source's top entry takes in it ('.' = into it). */
interface Target {
  dir: string
  name: string
}

/** docker cp's destination rules, from what the source and destination are. */
export function placeTarget(src: {kind: 'dir' | 'file' | 'link'; base: string; contents: boolean}, dest: {path: string; kind: Kind}, dirname2: (p: string) => string): Target {
  const trailing = /\/$/.test(dest.path) || /\/\.$/.test(dest.path)
  const clean = dest.path.replace(/\/+\.?$/, '') || '/'
  if (src.contents && src.kind !== 'dir') throw usageError('a source ending in /. must be a directory')
  switch (dest.kind) {
    case 'dir':
      return src.contents ? {dir: clean, name: '.'} : {dir: clean, name: src.base}
    case 'file':
    case 'link':
      if (src.kind === 'dir') throw usageError(`cannot copy a directory onto the file ${dest.path}`)
      if (trailing) throw usageError(`${dest.path} is not a directory`)
      return {dir: dirname2(clean), name: posix.basename(clean)}
    case 'none':
      if (trailing && src.kind !== 'dir') throw usageError(`destination directory ${dest.path} does not exist`)
      return {dir: dirname2(clean), name: posix.basename(clean)}
    case 'noparent':
      throw new AgentError('not_found', `${dest.path}: a directory on the way to it does not exist`, {hint: `create ${dirname2(clean)} first; only the last part of the destination is created`})
  }
}

/** Renames the source's top entry (`top`, `top/...`) to `name`; undefined for anything else. */
export function renameEntry(path: string, top: string, name: string): string | undefined {
  const slash = path.endsWith('/')
  const p = path.replace(/\/+$/, '').replace(/^\.\/(?=.)/, '')
  const t = top.replace(/\/+$/, '')
  let rest: string
  if (p === t || (t === '.' && p === '')) rest = ''
  else if (t === '.' ? !p.startsWith('/') && p !== '..' && !p.startsWith('../') : p.startsWith(`${t}/`)) rest = t === '.' ? p : p.slice(t.length + 1)
  else return undefined
  const out = rest === '' ? name : name === '.' ? rest : `${name}/${rest}`
  return slash && !out.endsWith('/') ? `${out}/` : out
}

/** Copies between the host and a VM; exactly one end is a VM path. */
export async function copy(ctx: ServiceContext, from: string, to: string, o: CopyOptions = {}): Promise<CopyResult> {
  const src = parseCopyEnd(from)
  const dst = parseCopyEnd(to)
  if ('vm' in src && 'vm' in dst) throw usageError('copy between a VM and the host: one side must be a host path', 'copy through the host: agent vm cp A:/p ./tmp && agent vm cp ./tmp B:/p')
  if (!('vm' in src) && !('vm' in dst)) throw usageError('one side must be a VM path, written ID:/path (as in agent vm cp ./dir ID:/work)')
  const limits = {maxBytes: o.maxBytes ?? DEFAULT_MAX_BYTES, maxEntries: o.maxEntries ?? MAX_ENTRIES, timeoutSec: o.timeoutSec ?? 600}
  const vm = await resolveVm(ctx, 'vm' in src ? src.vm : (dst as {vm: string}).vm)
  const guest = await guestSide(ctx, vm, limits.timeoutSec)
  if ('vm' in dst) return copyIn(guest, vm, (src as {host: string}).host, dst.path, limits)
  return copyOut(guest, vm, (src as {vm: string; path: string}).path, (dst as {host: string}).host, limits)
}

export type Limits = {maxBytes: number; maxEntries: number; timeoutSec: number}

/** The guest's side of a copy: what a path is, its tar stream, and extraction into a directory. */
interface GuestSide {
  via: CopyResult['via']
  probe(path: string, followLast: boolean): Promise<Kind>
  /** A tar of `base` (or '.') in the guest directory `dir`, written to `sink` (ended, or destroyed with the error). `stop` ends it early. */
  pack(dir: string, base: string, sink: PassThrough, stop: AbortSignal): Promise<void>
  /** Extracts the tar `stream` into the guest directory `dir`; `stop` gives up (the stream failed). */
  unpack(dir: string, stream: Readable, stop: AbortSignal): Promise<void>
}

async function guestSide(ctx: ServiceContext, vm: VmRecord, timeoutSec: number): Promise<GuestSide> {
  if (vm.status === 'running') return runningGuest(ctx, vm, timeoutSec)
  if (vm.status === 'stopped') {
    const l = await launcherByName(vm.launcher)
    const mounts = await l.stoppedFiles(vm, launchContext(ctx, vm, {}))
    return stoppedGuest(mounts)
  }
  throw conflict(`VM ${vm.id} is ${vm.status}: its files cannot be copied`, `clean it with \`agent vm clean ${vm.id}\``)
}

// ---------------------------------------------------------------- a running VM: the guest's tar

const PROBE = `p=$1
if [ "$2" = nofollow ] && [ -L "$p" ]; then echo link
elif [ -d "$p" ]; then echo dir
elif [ -e "$p" ] || [ -L "$p" ]; then echo file
elif [ -d "$(dirname -- "$p")" ]; then echo none
else echo noparent; fi`

function runningGuest(ctx: ServiceContext, vm: VmRecord, timeoutSec: number): GuestSide {
  const run = async (argv: string[], extra: {stdin?: Readable; onStdout?: (b: Buffer) => void; stop?: AbortSignal} = {}) => {
    const signals = [ctx.signal, extra.stop].filter((x): x is AbortSignal => x !== undefined)
    const {result} = await execVm(ctx, vm, {
      argv,
      timeoutSec,
      output: 'capture',
      maxCaptureBytes: 64 * 1024,
      stdin: extra.stdin,
      onOutput: extra.onStdout
        ? (s, b) => {
            if (s === 'stdout') extra.onStdout!(b)
          }
        : undefined,
      signal: signals.length ? AbortSignal.any(signals) : undefined,
    })
    return result
  }
  const failed = (what: string, r: {exitCode: number; stderr: string; timedOut: boolean}) => {
    if (r.exitCode === 127) return new AgentError('unavailable', `${what}: the VM's image has no tar (exit 127)`, {hint: 'install tar in the image, or stop the VM and copy through its disk'})
    if (r.timedOut) return new AgentError('guest', `${what} timed out after ${timeoutSec}s`)
    return new AgentError('guest', `${what} failed in ${vm.id} (exit ${r.exitCode}): ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`)
  }
  return {
    via: 'guest tar',
    async probe(path, followLast) {
      const r = await run(['/bin/sh', '-c', PROBE, 'sh', path, followLast ? 'follow' : 'nofollow'])
      const kind = r.stdout.trim()
      if (r.exitCode !== 0 || !['dir', 'file', 'link', 'none', 'noparent'].includes(kind)) throw failed(`looking at ${path}`, r)
      return kind as Kind
    },
    async pack(dir, base, sink, stop) {
      const r = await run(['tar', '-C', dir, '-cf', '-', '--', base], {onStdout: (b) => !sink.destroyed && sink.write(b), stop})
      if (r.exitCode !== 0) {
        sink.destroy(failed(`tar of ${posix.join(dir, base)}`, r))
        return
      }
      sink.end()
    },
    async unpack(dir, stream, stop) {
      // As root in the guest, tar keeps modes; owners become the guest's root (docker cp's rule).
      const r = await run(['tar', '-C', dir, '-xf', '-', '--no-same-owner'], {stdin: stream, stop})
      if (r.exitCode !== 0) throw failed(`extracting into ${dir}`, r)
    },
  }
}

// ---------------------------------------------------------------- a stopped VM: its disk, confined

/** The host path of a guest path: the deepest mount holding it. */
function hostOf(mounts: readonly GuestMount[], guest: string): {host: string; mount: GuestMount} {
  let best: GuestMount | undefined
  for (const m of mounts) {
    if ((guest === m.guest || guest.startsWith(m.guest === '/' ? '/' : `${m.guest}/`)) && (!best || m.guest.length > best.guest.length)) best = m
  }
  if (!best) throw new AgentError('internal', `no mount holds ${guest}`)
  return {host: join(best.host, guest.slice(best.guest === '/' ? 1 : best.guest.length)), mount: best}
}

/**
 * Resolves a guest path inside the guest's root, as the guest would, without ever following a
 * symlink on the host: each component is lstat'ed, a symlink's target is interpreted as a guest
 * path. Returns the guest path with no symlink left (but the last, unless followLast) and its
 * host path, or the first missing component.
 */
export function resolveInGuest(mounts: readonly GuestMount[], path: string, followLast: boolean): {guest: string; host: string; mount: GuestMount; missing: boolean; missingParent: boolean} {
  const done: string[] = []
  const todo = path.split('/').filter((c) => c !== '' && c !== '.')
  let links = 0
  while (todo.length) {
    const c = todo.shift()!
    if (c === '..') {
      done.pop()
      continue
    }
    const guest = `/${[...done, c].join('/')}`
    const {host} = hostOf(mounts, guest)
    let st
    try {
      st = lstatSync(host)
    } catch {
      const rest = todo.filter((x) => x !== '.')
      if (rest.length === 0) return {guest, ...hostOf(mounts, guest), missing: true, missingParent: false}
      return {guest, ...hostOf(mounts, guest), missing: true, missingParent: true}
    }
    if (st.isSymbolicLink() && (todo.length > 0 || followLast)) {
      if (++links > MAX_LINKS) throw usageError(`too many levels of symbolic links in ${path}`)
      const target = readlinkSync(host)
      if (target.startsWith('/')) done.length = 0
      todo.unshift(...target.split('/').filter((x) => x !== '' && x !== '.'))
      continue
    }
    if (!st.isSymbolicLink() && !st.isDirectory() && todo.length > 0) {
      // A file in the middle of a path: as ENOTDIR in the guest.
      return {guest, ...hostOf(mounts, guest), missing: true, missingParent: true}
    }
    done.push(c)
  }
  const guest = `/${done.join('/')}`
  return {guest, ...hostOf(mounts, guest), missing: false, missingParent: false}
}

function stoppedGuest(mounts: GuestMount[]): GuestSide {
  const writable = (guestDir: string) => {
    const r = resolveInGuest(mounts, guestDir, true)
    if (r.missing) throw notFound('directory', guestDir)
    if (r.mount.readOnly) throw usageError(`${r.mount.guest} is read-only in the VM`)
    return r.host
  }
  return {
    via: 'stopped VM disk',
    async probe(path, followLast) {
      const r = resolveInGuest(mounts, path, followLast)
      // A dangling link is still there, as `[ -L ]` says in the guest.
      if (r.missing && followLast && !resolveInGuest(mounts, path, false).missing) return 'file'
      if (r.missing) return r.missingParent ? 'noparent' : 'none'
      const st = lstatSync(r.host)
      return st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : 'file'
    },
    async pack(dir, base, sink) {
      const r = resolveInGuest(mounts, dir, true)
      if (r.missing) throw notFound('directory', dir)
      // node-tar walks with lstat and never follows a link (follow: false); r.host holds none.
      await pipeline(tar.create({cwd: r.host, follow: false, portable: false}, [base]), sink)
    },
    async unpack(dir, stream) {
      const host = writable(dir)
      const u = hostUnpacker(host, {maxBytes: Number.POSITIVE_INFINITY, maxEntries: Number.POSITIVE_INFINITY}, (p) => p, () => undefined)
      await pipeline(stream, u.stream)
      u.finish()
    },
  }
}

async function copyIn(guest: GuestSide, vm: VmRecord, hostPath: string, guestPath: string, limits: Limits): Promise<CopyResult> {
  if (hostPath.includes('\n')) throw usageError('a host path must not contain a newline')
  const contents = /(^|\/)\.$/.test(hostPath)
  const abs = resolve(hostPath)
  const src = checkHostSource(abs, limits)
  const target = placeTarget({kind: src.kind, base: basename(abs), contents}, {path: guestPath, kind: await guest.probe(guestPath, true)}, posix.dirname)
  // Packed from the parent with the top entry renamed, so the guest's tar writes only `target.name`.
  const top = basename(abs)
  const pack = tar.create(
    {
      cwd: dirname(abs),
      follow: false,
      portable: false,
      filter: (_p, st) => !('isSymbolicLink' in st && (st as {isSymbolicLink(): boolean}).isSymbolicLink()),
      onWriteEntry: (e) => {
        const p = renameEntry(e.path, top, target.name)
        if (p === undefined) throw new AgentError('internal', `unexpected entry ${e.path}`)
        e.path = p
        if (e.type === 'Link' && e.linkpath) e.linkpath = renameEntry(e.linkpath, top, target.name) ?? e.linkpath
      },
    },
    [top],
  )
  let bytes = 0
  // Counts without consuming: nothing flows until the exec pipes it to the guest's stdin.
  const counted = new Transform({
    transform(chunk: Buffer, _enc, next) {
      bytes += chunk.length
      next(null, chunk)
    },
  })
  const stop = new AbortController()
  let packError: unknown
  pack.on('error', (e: unknown) => {
    packError = e
    counted.destroy(e as Error)
    stop.abort(e)
  })
  pack.pipe(counted)
  await guest.unpack(target.dir, counted, stop.signal).catch((err) => {
    throw packError ? new AgentError('usage', `reading ${hostPath} failed: ${errorMessage(packError)}`) : err
  })
  if (packError) throw new AgentError('usage', `reading ${hostPath} failed: ${errorMessage(packError)}`)
  return {vm: vm.id, direction: 'in', target: target.name === '.' ? target.dir : posix.join(target.dir, target.name), entries: src.entries, bytes, via: guest.via}
}

async function copyOut(guest: GuestSide, vm: VmRecord, guestPath: string, hostPath: string, limits: Limits): Promise<CopyResult> {
  const contents = /\/\.$/.test(guestPath) || guestPath === '/'
  const clean = guestPath.replace(/\/+\.?$/, '') || '/'
  const kind = await guest.probe(clean, false)
  if (kind === 'none' || kind === 'noparent') throw notFound('path', `${vm.id}:${clean}`)
  if (contents && kind !== 'dir') throw usageError(`${guestPath}: a source ending in /. must be a directory`)
  const [gdir, gbase] = contents ? [clean, '.'] : [posix.dirname(clean), posix.basename(clean)]
  const target = placeTarget({kind: kind === 'dir' ? 'dir' : 'file', base: gbase, contents}, {path: hostPath, kind: hostKind(hostPath)}, dirname)
  const cwd = resolve(target.dir)
  let bytes = 0
  let entries = 0
  const sink = new PassThrough()
  const stop = new AbortController()
  sink.on('data', (b: Buffer) => {
    bytes += b.length
    if (bytes > limits.maxBytes && !sink.destroyed) {
      sink.destroy(new AgentError('usage', `${vm.id}:${guestPath} is larger than the copy limit of ${limits.maxBytes} bytes: copy stopped`, {hint: 'raise it with --max-size (MiB)'}))
    }
  })
  sink.on('close', () => stop.abort())
  const unpacker = hostUnpacker(cwd, limits, (p) => renameEntry(p, gbase, target.name), () => entries++)
  const done = pipeline(sink, unpacker.stream)
  try {
    await guest.pack(gdir, gbase, sink, stop.signal)
  } catch (err) {
    sink.destroy(err as Error)
  }
  try {
    await done
    unpacker.finish()
  } catch (err) {
    if (err instanceof AgentError) throw err
    const e = err as {code?: string; tarCode?: string; message?: string}
    throw new AgentError('guest', `copying ${vm.id}:${guestPath} refused: ${e.tarCode ? `${e.tarCode}: ` : ''}${errorMessage(err)}`, {
      hint: e.tarCode ? 'the VM sent an entry that would land outside the destination or through a link; nothing outside it was written' : undefined,
    })
  }
  return {vm: vm.id, direction: 'out', target: target.name === '.' ? cwd : join(cwd, target.name), entries, bytes, via: guest.via}
}
