import {mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {checkInputFiles, copyInputFiles, guestName} from './files.js'

const tmp = mkdtempSync(join(tmpdir(), 'agent-files-'))
afterAll(() => rmSync(tmp, {recursive: true, force: true}))

describe('input files', () => {
  it('keeps only the base name, so nothing lands outside /in', () => {
    expect(guestName('../../etc/passwd')).toBe('passwd')
    expect(guestName('/abs/path/main.py')).toBe('main.py')
    expect(() => guestName('bad\nname.py')).toThrow(/not a plain file name/)
    expect(() => guestName('..')).toThrow(/not a plain file name/)
    expect(() => guestName('.agent-cmd')).toThrow(/not a plain file name/)
  })

  it('refuses directories, missing files, symlinks and duplicate names before copying anything', () => {
    const good = join(tmp, 'main.py')
    writeFileSync(good, 'print(1)\n')
    mkdirSync(join(tmp, 'dir'))
    symlinkSync('/etc/shadow', join(tmp, 'secret'))
    mkdirSync(join(tmp, 'other'))
    writeFileSync(join(tmp, 'other', 'main.py'), 'x')
    expect(() => checkInputFiles([join(tmp, 'dir')])).toThrow(/is a directory/)
    expect(() => checkInputFiles([join(tmp, 'missing.py')])).toThrow(/does not exist/)
    expect(() => checkInputFiles([join(tmp, 'secret')])).toThrow(/symbolic link/)
    expect(() => checkInputFiles([good, join(tmp, 'other', 'main.py')])).toThrow(/both land at \/in\/main.py/)
    expect(() => checkInputFiles([good, join(tmp, 'secret')])).toThrow()
    const inDir = join(tmp, 'in')
    expect(existsSync(inDir)).toBe(false)
    copyInputFiles(checkInputFiles([good]), inDir)
    expect(readFileSync(join(inDir, 'main.py'), 'utf8')).toBe('print(1)\n')
  })
})
