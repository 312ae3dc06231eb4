/**
 * /in and /out of a pod, which are not host directories: the host's <vmDir>/in is sent as a tar
 * stream over exec before a command (`--file`), and the guest's /out comes back the same way
 * after it (`--out`), each copy waited for to its end (the exec's exit status).
 *
 * Sending: the tar is made whole first (--file inputs are small) and read by
 * `head -c SIZE | tar -x`, so the guest stops at the last byte even on the v4 protocol, which
 * cannot close stdin alone. Receiving: the guest's tar is hostile; only regular files and
 * directories are written, under the out dir only (node-tar refuses `..` and absolute paths), no
 * owners, no set-id bits, bounded in bytes and entries.
 */
import {existsSync, mkdirSync, readdirSync, rmSync} from 'node:fs'
import {PassThrough} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import * as tar from 'tar'
import {AgentError, errorMessage} from '../../errors.js'
import type {Cluster} from './client.js'
import {podExec} from './exec.js'

export const MAX_OUT_BYTES = 1024 * 1024 * 1024
export const MAX_OUT_ENTRIES = 100_000

const tail = (b: Buffer[]) => Buffer.concat(b).toString('utf8').trim().split('\n').slice(-3).join('; ').slice(0, 500)

/** Sends everything in the host dir into the guest dir. Nothing to send: no exec at all. */
export async function sendDir(c: Cluster, pod: string, hostDir: string, guestDir: string): Promise<number> {
  const names = existsSync(hostDir) ? readdirSync(hostDir) : []
  if (!names.length) return 0
  const chunks: Buffer[] = []
  await pipeline(tar.create({cwd: hostDir, portable: true, follow: false}, names), new PassThrough().on('data', (b: Buffer) => chunks.push(b)))
  const body = Buffer.concat(chunks)
  const err: Buffer[] = []
  const r = await podExec(c, pod, ['/bin/sh', '-c', 'head -c "$0" | tar -x -o -f - -C "$1"', String(body.length), guestDir], {
    stdin: body,
    onStdout: () => undefined,
    onStderr: (b) => err.length < 64 && err.push(b),
  })
  if (r.exitCode !== 0) throw new AgentError('guest', `copying ${names.length} file(s) into ${guestDir} of pod ${pod} failed (${r.exitCode === null ? r.lost : `exit ${r.exitCode}`}): ${tail(err) || 'no message'}`, {hint: 'the image needs sh, head and tar'})
  return names.length
}

/**
 * Where a hostile tar stream is written: only regular files and directories, under `hostDir`
 * only, no owners or set-id bits, at most `maxBytes` of stream and `maxEntries` entries. `write`
 * takes the stream as it comes; `end` resolves when it is all on disk, or throws why it was refused
 * (and then `hostDir` holds nothing).
 */
export function guestTarSink(hostDir: string, what: string, limits = {maxBytes: MAX_OUT_BYTES, maxEntries: MAX_OUT_ENTRIES}) {
  rmSync(hostDir, {recursive: true, force: true})
  mkdirSync(hostDir, {recursive: true, mode: 0o700})
  let bytes = 0
  let entries = 0
  let refused: AgentError | undefined
  const input = new PassThrough()
  const refuse = (e: AgentError) => {
    refused ??= e
    input.destroy(e)
  }
  const unpack = tar.extract({
    cwd: hostDir,
    strict: true,
    preserveOwner: false,
    preservePaths: false,
    unlink: false,
    filter: (_path, entry) => {
      const e = entry as tar.ReadEntry
      if (++entries > limits.maxEntries) {
        refuse(new AgentError('guest', `${what} holds more than ${limits.maxEntries} entries: not copied`))
        return false
      }
      // Links, devices and fifos are left out: nothing the guest sends is followed on the host.
      if (e.type !== 'File' && e.type !== 'OldFile' && e.type !== 'Directory') return false
      if (typeof e.mode === 'number') e.mode &= 0o777
      return true
    },
  })
  const done = pipeline(input, unpack).catch((e: unknown) => {
    refused ??= e instanceof AgentError ? e : new AgentError('guest', `${what} arrived as a broken tar stream: ${errorMessage(e)}`)
  })
  return {
    write(b: Buffer): void {
      if (refused || input.destroyed) return
      bytes += b.length
      if (bytes > limits.maxBytes) refuse(new AgentError('guest', `${what} is larger than ${limits.maxBytes} bytes: not copied`))
      else input.write(b)
    },
    async end(): Promise<void> {
      if (!input.destroyed) input.end()
      await done
      if (refused) {
        rmSync(hostDir, {recursive: true, force: true})
        mkdirSync(hostDir, {recursive: true, mode: 0o700})
        throw refused
      }
    },
  }
}

/** Replaces the host dir's contents with the guest dir's. */
export async function fetchDir(c: Cluster, pod: string, guestDir: string, hostDir: string): Promise<void> {
  const sink = guestTarSink(hostDir, `the guest's ${guestDir}`)
  const err: Buffer[] = []
  const r = await podExec(c, pod, ['/bin/sh', '-c', 'cd "$0" 2>/dev/null || exit 0; exec tar -c -f - .', guestDir], {
    onStdout: (b) => sink.write(b),
    onStderr: (b) => err.length < 64 && err.push(b),
  })
  await sink.end()
  if (r.exitCode !== 0) throw new AgentError('guest', `copying ${guestDir} out of pod ${pod} failed (${r.exitCode === null ? r.lost : `exit ${r.exitCode}`}): ${tail(err) || 'no message'}`)
}
