/**
 * The host side of `agent vm cp`: extracting a tar stream a guest wrote (hostile until proven
 * otherwise) into the destination only, and walking a host source before it is sent.
 */
import {lstatSync, mkdirSync, readdirSync, rmdirSync, statSync, symlinkSync, unlinkSync} from 'node:fs'
import {dirname, join, resolve} from 'node:path'
import * as tar from 'tar'
import {AgentError, errorMessage, usageError} from '../errors.js'
import type {Kind, Limits} from './vm-copy.js'

/**
 * node-tar's extractor, hardened for a stream a guest wrote: strict (any warning, such as a path
 * through a symlink or an escaping path, fails the copy), no owners, entries renamed or refused
 * by `rename`, types limited to files, directories, symlinks and hard links, and the limits.
 *
 * Symlinks are kept as the guest made them (docker cp does), so node-tar does not make them (it
 * would rewrite absolute targets and drop ones pointing up): finish() makes them after every
 * other entry, as GNU tar delays them, so no entry of this copy can be written through one, and
 * only in directories made of real directories under the destination.
 */
export function hostUnpacker(cwd: string, limits: Pick<Limits, 'maxBytes' | 'maxEntries'>, rename: (p: string) => string | undefined, onEntry: (e: tar.ReadEntry) => void) {
  let entries = 0
  let refused: AgentError | undefined
  const refuse = (err: AgentError) => {
    // Not thrown from inside the parser: aborted, so the pipeline fails with this error (and
    // finish() throws it, should the stream have ended first).
    refused ??= err
    setImmediate(() => u.abort(err))
    return false
  }
  const links: Array<{path: string; target: string}> = []
  const u = tar.extract({
    cwd,
    strict: true,
    preserveOwner: false,
    preservePaths: false,
    unlink: false,
    filter: (path, entry) => {
      const e = entry as tar.ReadEntry
      if (++entries > limits.maxEntries) return refuse(new AgentError('usage', `more than ${limits.maxEntries} entries: copy refused`, {hint: 'copy a smaller tree'}))
      if (!['File', 'OldFile', 'ContiguousFile', 'Directory', 'SymbolicLink', 'Link'].includes(e.type)) return false
      const renamed = rename(path)
      if (renamed === undefined) return refuse(new AgentError('guest', `the VM sent ${JSON.stringify(path)}, outside what was asked for: copy refused`))
      e.path = renamed
      if (e.type === 'SymbolicLink') {
        links.push({path: renamed, target: String(e.linkpath)})
        onEntry(e)
        return false
      }
      if (e.type === 'Link') {
        const lp = rename(String(e.linkpath))
        if (lp === undefined) return refuse(new AgentError('guest', `the VM sent a hard link to ${JSON.stringify(e.linkpath)}, outside what was asked for: copy refused`))
        e.linkpath = lp
      }
      onEntry(e)
      return true
    },
  })
  const finish = () => {
    if (refused) throw refused
    for (const l of links) {
      const parts = l.path.replace(/\/+$/, '').split('/').filter((x) => x !== '' && x !== '.')
      if (parts.length === 0 || parts.includes('..')) throw new AgentError('guest', `the VM sent a symlink at ${JSON.stringify(l.path)}: copy refused`)
      let dir = cwd
      for (const part of parts.slice(0, -1)) {
        dir = join(dir, part)
        let st
        try {
          st = lstatSync(dir)
        } catch {
          mkdirSync(dir, {mode: 0o755})
          continue
        }
        if (!st.isDirectory()) throw new AgentError('guest', `the VM sent a symlink at ${JSON.stringify(l.path)}, under something that is not a directory (${dir}): copy refused`)
      }
      const leaf = join(dir, parts[parts.length - 1]!)
      try {
        const st = lstatSync(leaf)
        if (st.isDirectory()) rmdirSync(leaf)
        else unlinkSync(leaf)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new AgentError('guest', `cannot put the symlink ${l.path} in place: ${errorMessage(err)}`)
      }
      symlinkSync(l.target, leaf)
    }
  }
  return {stream: u, finish}
}

interface HostSource {
  kind: 'dir' | 'file'
  entries: number
  bytes: number
}

/** Walks a host source: refuses symlinks, special files, and what exceeds the limits. */
export function checkHostSource(path: string, limits: Pick<Limits, 'maxBytes' | 'maxEntries'>): HostSource {
  const out: HostSource = {kind: 'file', entries: 0, bytes: 0}
  const visit = (p: string, top: boolean) => {
    let st
    try {
      st = lstatSync(p)
    } catch {
      throw usageError(`${JSON.stringify(p)} does not exist`)
    }
    if (st.isSymbolicLink()) throw usageError(`refusing ${JSON.stringify(p)}: it is a symbolic link (copy what it points to, if you mean it)`)
    if (++out.entries > limits.maxEntries) throw usageError(`${path} holds more than ${limits.maxEntries} entries`)
    if (st.isDirectory()) {
      if (top) out.kind = 'dir'
      out.bytes += 512
      for (const name of readdirSync(p)) visit(join(p, name), false)
    } else if (st.isFile()) {
      out.bytes += 512 + Math.ceil(st.size / 512) * 512
    } else throw usageError(`refusing ${JSON.stringify(p)}: not a regular file or directory`)
    if (out.bytes > limits.maxBytes) throw usageError(`${path} is larger than the copy limit of ${limits.maxBytes} bytes`, 'raise it with --max-size (MiB)')
  }
  visit(path, true)
  return out
}

/** The host destination: the user's own path, so a link they made to a directory is followed (docker does); a leaf link to a file is replaced, never written through. */
export function hostKind(p: string): Kind {
  try {
    return statSync(p).isDirectory() ? 'dir' : 'file'
  } catch {
    try {
      lstatSync(p)
      return 'link' // dangling: replaced by the copy
    } catch {
      // absent
    }
    try {
      return statSync(dirname(resolve(p))).isDirectory() ? 'none' : 'noparent'
    } catch {
      return 'noparent'
    }
  }
}
