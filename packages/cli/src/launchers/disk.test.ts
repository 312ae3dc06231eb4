import {linkSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {loopsOf} from './disk.js'

let dir: string
let sys: string
/** A stand-in /sys/block: loopN/loop/backing_file as the kernel writes it (path and a newline). */
function loop(name: string, backing?: string): void {
  mkdirSync(join(sys, name, 'loop'), {recursive: true})
  if (backing !== undefined) writeFileSync(join(sys, name, 'loop', 'backing_file'), `${backing}\n`)
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'agent-disk-'))
  sys = join(dir, 'sys-block')
  mkdirSync(sys)
})
afterEach(() => rmSync(dir, {recursive: true, force: true}))

describe('loopsOf (what `losetup -j` finds, read from sysfs)', () => {
  it('finds the devices bound to the image, by device and inode', () => {
    const image = join(dir, 'disk.img')
    const other = join(dir, 'other.img')
    writeFileSync(image, '')
    writeFileSync(other, '')
    linkSync(image, join(dir, 'same-inode.img'))
    loop('loop0', other)
    loop('loop3', image)
    loop('loop7', join(dir, 'same-inode.img'))
    loop('loop9') // not bound: no backing_file
    loop('loop4', join(dir, 'gone.img (deleted)'))
    mkdirSync(join(sys, 'sda'))
    expect(loopsOf(image, sys).sort()).toEqual(['/dev/loop3', '/dev/loop7'])
    expect(loopsOf(other, sys)).toEqual(['/dev/loop0'])
  })

  it('finds nothing for an image that does not exist, or without sysfs', () => {
    loop('loop0', join(dir, 'x.img'))
    expect(loopsOf(join(dir, 'x.img'), sys)).toEqual([])
    writeFileSync(join(dir, 'y.img'), '')
    expect(loopsOf(join(dir, 'y.img'), join(dir, 'no-sys'))).toEqual([])
  })
})
