import {chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {binaryKey, cacheFile, probeVersion} from './version-probe.js'

let dir: string
let bin: string
let calls: string
let file: string

/** A stand-in runtime that counts how often it is started. */
function writeBin(version: string, exit = 0): void {
  writeFileSync(bin, `#!/bin/sh\necho x >> '${calls}'\necho '${version}'\necho 'spec: 1.0.2-dev'\necho 'oops' >&2\nexit ${exit}\n`)
  chmodSync(bin, 0o755)
}
const started = () => (existsSync(calls) ? readFileSync(calls, 'utf8').split('\n').filter(Boolean).length : 0)

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'agent-vprobe-'))
  bin = join(dir, 'fake-runsc')
  calls = join(dir, 'calls')
  file = join(dir, 'state', 'run', 'binary-versions.json')
})
afterEach(() => rmSync(dir, {recursive: true, force: true}))

describe('probeVersion', () => {
  it('asks the binary once, then answers from the cache without starting it', async () => {
    writeBin('runsc version 0.0~20240729.0')
    const first = await probeVersion(bin, {file})
    expect(first).toEqual({missing: false, exitCode: 0, line: 'runsc version 0.0~20240729.0', cached: false})
    const second = await probeVersion(bin, {file})
    expect(second).toEqual({missing: false, exitCode: 0, line: 'runsc version 0.0~20240729.0', cached: true})
    expect(started()).toBe(1)
  })

  it('asks again when the binary is replaced or touched', async () => {
    writeBin('runsc version 0.0~20221219.0')
    await probeVersion(bin, {file})
    writeBin('runsc version 0.0~20240729.0')
    expect((await probeVersion(bin, {file})).line).toBe('runsc version 0.0~20240729.0')
    expect(started()).toBe(2)
    // Same bytes, new mtime: still a different binary as far as the cache knows.
    utimesSync(bin, new Date(), new Date(Date.now() - 3_600_000))
    expect((await probeVersion(bin, {file})).cached).toBe(false)
    expect(started()).toBe(3)
  })

  it('never keeps a failed answer', async () => {
    writeBin('runsc version 0.0~20240729.0', 3)
    const r = await probeVersion(bin, {file})
    expect(r).toMatchObject({missing: false, exitCode: 3, line: 'oops', cached: false})
    await probeVersion(bin, {file})
    expect(started()).toBe(2)
    expect(existsSync(file)).toBe(false)
  })

  it('says missing for a binary that is not there', async () => {
    const r = await probeVersion(join(dir, 'no-such-runsc'), {file})
    expect(r.missing).toBe(true)
    expect(binaryKey(join(dir, 'no-such-runsc'))).toBeUndefined()
  })

  it('ignores a cache file that is not its own format', async () => {
    writeBin('runsc version 0.0~20240729.0')
    await probeVersion(bin, {file})
    writeFileSync(file, '{"not": "a list"}')
    expect((await probeVersion(bin, {file})).cached).toBe(false)
    writeFileSync(file, JSON.stringify([{key: binaryKey(bin), line: 7}]))
    expect((await probeVersion(bin, {file})).cached).toBe(false)
    expect(started()).toBe(3)
  })

  it('keeps the cache in an existing state dir only', () => {
    expect(cacheFile({AGENT_STATE_DIR: join(dir, 'nothing-here')})).toBeUndefined()
    expect(cacheFile({AGENT_STATE_DIR: dir})).toBe(join(dir, 'run', 'binary-versions.json'))
  })
})
