import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'
import {DEFAULT_MCP_OPTIONS, resolveMcpOptions} from './options.js'
import {guestPathOf} from './sandboxes.js'

const dirs: string[] = []
function stateWith(config?: unknown): string {
  const d = mkdtempSync(join(tmpdir(), 'mcp-opts-'))
  dirs.push(d)
  if (config !== undefined) writeFileSync(join(d, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config))
  return d
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, {recursive: true, force: true})
})

describe('MCP options', () => {
  it('defaults: no network, 15 min lifetime, 64 KiB of output per stream, destroyed at exit', () => {
    expect(resolveMcpOptions(stateWith())).toEqual(DEFAULT_MCP_OPTIONS)
    expect(DEFAULT_MCP_OPTIONS).toMatchObject({allowNetwork: false, keep: false, ttlSec: 900, maxOutputBytes: 65536})
  })

  it('config.json "mcp" over the defaults, flags over the file; undefined flags change nothing', () => {
    const root = stateWith({mcp: {allowNetwork: true, ttlSec: 60, memoryMib: 256}})
    expect(resolveMcpOptions(root)).toMatchObject({allowNetwork: true, ttlSec: 60, memoryMib: 256})
    expect(resolveMcpOptions(root, {ttlSec: 5, memoryMib: undefined})).toMatchObject({allowNetwork: true, ttlSec: 5, memoryMib: 256})
  })

  it('refuses unknown keys, bad values and defaults above their maxima, naming the flag', () => {
    expect(() => resolveMcpOptions(stateWith({mcp: {ttl: 5}}))).toThrow(/unknown key "mcp.ttl"/)
    expect(() => resolveMcpOptions(stateWith({mcp: []}))).toThrow(/"mcp" in .* must be an object/)
    expect(() => resolveMcpOptions(stateWith('{nope'))).toThrow(/is not valid JSON/)
    expect(() => resolveMcpOptions(stateWith(), {ttlSec: 7200, maxTtlSec: 3600})).toThrow('--ttl 7200 is above --max-ttl 3600')
    expect(() => resolveMcpOptions(stateWith(), {memoryMib: 1.5})).toThrow('--memory must be a whole number')
    expect(() => resolveMcpOptions(stateWith({mcp: {allowNetwork: 'yes'}}))).toThrow('--allow-network must be true or false')
    expect(resolveMcpOptions(stateWith(), {cpus: 0.5}).cpus).toBe(0.5)
  })
})

describe('guest paths', () => {
  it('are absolute or relative to /root, normalised, and never a directory or NUL', () => {
    expect(guestPathOf('main.py')).toBe('/root/main.py')
    expect(guestPathOf('a/../b.txt')).toBe('/root/b.txt')
    expect(guestPathOf('../../../etc/passwd')).toBe('/etc/passwd')
    expect(guestPathOf('/tmp/x')).toBe('/tmp/x')
    expect(() => guestPathOf('/')).toThrow(/names a directory/)
    expect(() => guestPathOf('dir/')).toThrow(/names a directory/)
    expect(() => guestPathOf('a\0b')).toThrow(/NUL/)
    expect(() => guestPathOf(' ')).toThrow(/non-empty/)
  })
})
