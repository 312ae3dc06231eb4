import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'
import {vmOrigin} from './vm-origin.js'

describe('vmOrigin', () => {
  const dirs: string[] = []
  const vmDir = (files: Record<string, string>) => {
    const d = mkdtempSync(join(tmpdir(), 'vm-origin-'))
    dirs.push(d)
    for (const [name, text] of Object.entries(files)) writeFileSync(join(d, name), text)
    return d
  }
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, {recursive: true, force: true})
  })

  it('reads the origin agent serve keeps in e2b.json', () => {
    expect(vmOrigin(vmDir({'e2b.json': JSON.stringify({origin: 'pool'})}))).toBe('pool')
    expect(vmOrigin(vmDir({'e2b.json': JSON.stringify({origin: 'api'})}))).toBe('api')
  })

  it('is mcp for an MCP sandbox and cli otherwise, also for an unreadable e2b.json or a missing dir', () => {
    expect(vmOrigin(vmDir({'mcp.json': '{}'}))).toBe('mcp')
    expect(vmOrigin(vmDir({}))).toBe('cli')
    expect(vmOrigin(vmDir({'e2b.json': '{not json'}))).toBe('cli')
    expect(vmOrigin(vmDir({'e2b.json': JSON.stringify({origin: 'elsewhere'})}))).toBe('cli')
    expect(vmOrigin('/nonexistent/vm-dir')).toBe('cli')
  })
})
