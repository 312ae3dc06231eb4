// What a hostile guest's tar stream (its /out, through exec) can do to the host: real tar
// streams, written block by block as a guest could, into a real directory.
import {existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import * as tar from 'tar'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {AgentError} from '../../errors.js'
import {guestTarSink} from './files.js'

interface Entry {
  path: string
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'FIFO' | 'CharacterDevice'
  body?: string
  mode?: number
  linkpath?: string
  uid?: number
}

/** A tar stream made header by header, so paths a well-behaved tar would never write can be sent. */
function tarOf(entries: Entry[]): Buffer {
  const blocks: Buffer[] = []
  for (const e of entries) {
    const body = Buffer.from(e.body ?? '')
    const h = new tar.Header({path: e.path, type: e.type ?? 'File', size: body.length, mode: e.mode ?? 0o644, linkpath: e.linkpath, uid: e.uid ?? 0, gid: 0, mtime: new Date(0)})
    const block = Buffer.alloc(512)
    h.encode(block)
    blocks.push(block, body, Buffer.alloc((512 - (body.length % 512)) % 512))
  }
  blocks.push(Buffer.alloc(1024))
  return Buffer.concat(blocks)
}

let root: string
let out: string
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'k8s-files-'))
  out = join(root, 'out')
})
afterEach(() => rmSync(root, {recursive: true, force: true}))

async function receive(stream: Buffer, limits?: {maxBytes: number; maxEntries: number}, chunk = 100) {
  const sink = guestTarSink(out, "the guest's /out", limits)
  for (let i = 0; i < stream.length; i += chunk) sink.write(stream.subarray(i, i + chunk))
  return sink.end()
}

describe('guestTarSink', () => {
  it('writes files and directories, without set-id bits, and leaves out links, fifos and devices', async () => {
    await receive(
      tarOf([
        {path: './', type: 'Directory', mode: 0o755},
        {path: './result.txt', body: 'made'},
        {path: './d/', type: 'Directory', mode: 0o755},
        {path: './d/tool', body: '#!/bin/sh', mode: 0o4755},
        {path: './link', type: 'SymbolicLink', linkpath: '/etc/passwd'},
        {path: './hard', type: 'Link', linkpath: 'result.txt'},
        {path: './fifo', type: 'FIFO'},
        {path: './tty', type: 'CharacterDevice'},
      ]),
    )
    expect(readdirSync(out).sort()).toEqual(['d', 'result.txt'])
    expect(readFileSync(join(out, 'result.txt'), 'utf8')).toBe('made')
    expect(statSync(join(out, 'd/tool')).mode & 0o7000).toBe(0)
  })

  it('keeps every entry under the out dir: `..` and absolute paths do not escape', async () => {
    await receive(
      tarOf([
        {path: '../escaped', body: 'x'},
        {path: '/tmp/absolute-from-guest', body: 'x'},
        {path: 'ok/../../escaped2', body: 'x'},
        {path: 'fine', body: 'y'},
      ]),
    ).catch(() => undefined)
    expect(existsSync(join(root, 'escaped'))).toBe(false)
    expect(existsSync(join(root, 'escaped2'))).toBe(false)
    expect(existsSync('/tmp/absolute-from-guest')).toBe(false)
    for (const f of readdirSync(out, {recursive: true}) as string[]) expect(lstatSync(join(out, f)).isSymbolicLink()).toBe(false)
  })

  it('refuses a stream over the byte limit or the entry limit, and leaves nothing', async () => {
    const big = tarOf([{path: 'a', body: 'x'.repeat(10_000)}])
    await expect(receive(big, {maxBytes: 5000, maxEntries: 10})).rejects.toThrow(/larger than 5000 bytes/)
    expect(readdirSync(out)).toEqual([])
    const many = tarOf(Array.from({length: 20}, (_, i) => ({path: `f${i}`, body: 'x'})))
    await expect(receive(many, {maxBytes: 1e6, maxEntries: 10})).rejects.toThrow(/more than 10 entries/)
    expect(readdirSync(out)).toEqual([])
  })

  it('a stream that is not tar is a guest error, not a crash, and writes nothing', async () => {
    const err = await receive(Buffer.from('this is not a tar stream at all '.repeat(40))).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(AgentError)
    expect((err as AgentError).kind).toBe('guest')
    expect((err as AgentError).message).toMatch(/broken tar stream/)
    expect(readdirSync(out)).toEqual([])
  })

  it('replaces what the out dir held before', async () => {
    await receive(tarOf([{path: 'old', body: '1'}]))
    await receive(tarOf([{path: 'new', body: '2'}]))
    expect(readdirSync(out)).toEqual(['new'])
  })
})
