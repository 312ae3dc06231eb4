import {existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, posix} from 'node:path'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import * as tar from 'tar'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {parseCopyEnd, placeTarget, renameEntry, resolveInGuest} from './vm-copy.js'
import {checkHostSource, hostUnpacker} from './vm-copy-host.js'

describe('parseCopyEnd', () => {
  it('reads ID:/path as a VM path and anything else as a host path', () => {
    expect(parseCopyEnd('python-1a2b3c4d:/work')).toEqual({vm: 'python-1a2b3c4d', path: '/work'})
    expect(parseCopyEnd('my.vm:/out/report.csv')).toEqual({vm: 'my.vm', path: '/out/report.csv'})
    expect(parseCopyEnd('./a:b')).toEqual({host: './a:b'})
    expect(parseCopyEnd('/abs/x:y')).toEqual({host: '/abs/x:y'})
    expect(parseCopyEnd('.')).toEqual({host: '.'})
    expect(() => parseCopyEnd('vm:relative')).toThrow(/must be absolute/)
  })
})

describe('renameEntry', () => {
  it('renames the top entry and refuses anything outside it', () => {
    expect(renameEntry('src/', 'src', 'work')).toBe('work/')
    expect(renameEntry('src/a/b', 'src', 'work')).toBe('work/a/b')
    expect(renameEntry('src/a', 'src', '.')).toBe('a')
    expect(renameEntry('./', '.', 'dest')).toBe('dest/')
    expect(renameEntry('./x', '.', 'dest')).toBe('dest/x')
    expect(renameEntry('srcx/a', 'src', 'work')).toBeUndefined()
    expect(renameEntry('/etc/passwd', 'src', 'work')).toBeUndefined()
    expect(renameEntry('../x', '.', 'dest')).toBeUndefined()
  })
})

describe('placeTarget (docker cp rules)', () => {
  const place = (kind: 'dir' | 'file', dest: string, destKind: 'dir' | 'file' | 'none' | 'noparent', contents = false) =>
    placeTarget({kind, base: 'src', contents}, {path: dest, kind: destKind}, posix.dirname)
  it('copies into an existing directory, or to a new name', () => {
    expect(place('dir', '/work', 'dir')).toEqual({dir: '/work', name: 'src'})
    expect(place('dir', '/work/new', 'none')).toEqual({dir: '/work', name: 'new'})
    expect(place('dir', '/work', 'dir', true)).toEqual({dir: '/work', name: '.'})
    expect(place('file', '/work/f.txt', 'file')).toEqual({dir: '/work', name: 'f.txt'})
  })
  it('refuses a directory onto a file, a file into a missing directory, a missing parent', () => {
    expect(() => place('dir', '/work/f.txt', 'file')).toThrow(/directory onto the file/)
    expect(() => place('file', '/nope/', 'none')).toThrow(/does not exist/)
    expect(() => place('file', '/a/b/c', 'noparent')).toThrow(/does not exist/)
  })
})

describe('on the host', () => {
  let root: string
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'vm-copy-test-'))
  })
  afterEach(() => rmSync(root, {recursive: true, force: true}))

  it('resolves guest paths inside the guest root: links never reach the host', () => {
    const rootfs = join(root, 'rootfs')
    const out = join(root, 'outdisk')
    mkdirSync(join(rootfs, 'etc'), {recursive: true})
    mkdirSync(join(rootfs, 'work'), {recursive: true})
    mkdirSync(join(rootfs, 'out'), {recursive: true})
    mkdirSync(out)
    symlinkSync('/etc', join(rootfs, 'work', 'etclink'))
    symlinkSync('../../../../../../../../tmp', join(rootfs, 'work', 'up'))
    symlinkSync('/out', join(rootfs, 'work', 'outlink'))
    symlinkSync('loop', join(rootfs, 'work', 'loop'))
    const mounts = [
      {guest: '/', host: rootfs, readOnly: false},
      {guest: '/out', host: out, readOnly: false},
    ]
    expect(resolveInGuest(mounts, '/work/etclink', true)).toMatchObject({guest: '/etc', host: join(rootfs, 'etc'), missing: false})
    expect(resolveInGuest(mounts, '/work/etclink', false)).toMatchObject({guest: '/work/etclink', host: join(rootfs, 'work/etclink')})
    // `..` stops at the guest's root: /tmp of the guest, which does not exist, never the host's.
    expect(resolveInGuest(mounts, '/work/up/x', true)).toMatchObject({guest: '/tmp', host: join(rootfs, 'tmp'), missing: true})
    expect(resolveInGuest(mounts, '/work/outlink/r.txt', true)).toMatchObject({guest: '/out/r.txt', host: join(out, 'r.txt'), missing: true, missingParent: false})
    expect(() => resolveInGuest(mounts, '/work/loop', true)).toThrow(/too many levels/)
  })

  it('refuses host symlinks anywhere in a source, and what is over the limits', () => {
    mkdirSync(join(root, 'src', 'sub'), {recursive: true})
    writeFileSync(join(root, 'src', 'sub', 'a'), 'x'.repeat(2000))
    expect(checkHostSource(join(root, 'src'), {maxBytes: 1e6, maxEntries: 10})).toMatchObject({kind: 'dir', entries: 3})
    expect(() => checkHostSource(join(root, 'src'), {maxBytes: 1000, maxEntries: 10})).toThrow(/larger than the copy limit/)
    expect(() => checkHostSource(join(root, 'src'), {maxBytes: 1e6, maxEntries: 2})).toThrow(/more than 2 entries/)
    symlinkSync('/etc/passwd', join(root, 'src', 'sub', 'link'))
    expect(() => checkHostSource(join(root, 'src'), {maxBytes: 1e6, maxEntries: 10})).toThrow(/symbolic link/)
  })

  /** A tar stream as a hostile guest could write it. */
  function hostileTar(entries: Array<{path: string; type?: string; linkpath?: string; body?: string}>): Readable {
    const blocks: Buffer[] = []
    for (const e of entries) {
      const body = Buffer.from(e.body ?? '')
      const h = new tar.Header({path: e.path, type: (e.type ?? 'File') as never, linkpath: e.linkpath, size: body.length, mode: 0o644, mtime: new Date()})
      const block = Buffer.alloc(512)
      h.encode(block, 0)
      blocks.push(block, body, Buffer.alloc((512 - (body.length % 512)) % 512))
    }
    blocks.push(Buffer.alloc(1024))
    return Readable.from([Buffer.concat(blocks)])
  }
  const receive = async (dest: string, stream: Readable) => {
    const u = hostUnpacker(dest, {maxBytes: 1e6, maxEntries: 100}, (p) => renameEntry(p, 'src', 'src'), () => undefined)
    await pipeline(stream, u.stream)
    u.finish()
  }

  it.each([
    ['a file through a symlink it sent', [{path: 'src/esc', type: 'SymbolicLink', linkpath: 'OUTSIDE'}, {path: 'src/esc/pwned', body: 'x'}]],
    ['a symlink under a symlink it sent', [{path: 'src/esc', type: 'SymbolicLink', linkpath: 'OUTSIDE'}, {path: 'src/esc/pwned', type: 'SymbolicLink', linkpath: '/etc/passwd'}]],
    ['a path with ..', [{path: 'src/../../pwned', body: 'x'}]],
    ['an absolute path', [{path: 'OUTSIDE/pwned', body: 'x'}]],
    ['a path outside what was asked for', [{path: 'other/pwned', body: 'x'}]],
    ['a hard link to a host file', [{path: 'src/hl', type: 'Link', linkpath: 'OUTSIDE/secret'}]],
  ])('refuses %s, writing nothing outside the destination', async (_what, entries) => {
    const outside = join(root, 'outside')
    mkdirSync(outside)
    writeFileSync(join(outside, 'secret'), 'secret')
    const dest = join(root, 'dest')
    mkdirSync(dest)
    const fix = (s?: string) => s?.replace('OUTSIDE', outside)
    await expect(receive(dest, hostileTar(entries.map((e) => ({...e, path: fix(e.path)!, linkpath: fix(e.linkpath)}))))).rejects.toThrow()
    expect(existsSync(join(outside, 'pwned'))).toBe(false)
    expect(existsSync(join(root, 'pwned'))).toBe(false)
    expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('secret')
  })

  it('keeps symlinks as the guest made them, and replaces a host link at the leaf instead of writing through it', async () => {
    const outside = join(root, 'outside')
    mkdirSync(outside)
    writeFileSync(join(outside, 'secret'), 'secret')
    const dest = join(root, 'dest')
    mkdirSync(join(dest, 'src'), {recursive: true})
    symlinkSync(join(outside, 'secret'), join(dest, 'src', 'f'))
    await receive(dest, hostileTar([{path: 'src/', type: 'Directory'}, {path: 'src/abs', type: 'SymbolicLink', linkpath: '/etc/passwd'}, {path: 'src/up', type: 'SymbolicLink', linkpath: '../../..'}, {path: 'src/f', body: 'new'}]))
    expect(readlinkSync(join(dest, 'src', 'abs'))).toBe('/etc/passwd')
    expect(readlinkSync(join(dest, 'src', 'up'))).toBe('../../..')
    expect(lstatSync(join(dest, 'src', 'f')).isFile()).toBe(true)
    expect(readFileSync(join(dest, 'src', 'f'), 'utf8')).toBe('new')
    expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('secret')
  })
})
