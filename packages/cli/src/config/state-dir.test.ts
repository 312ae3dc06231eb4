import {mkdtempSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {homedir, tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {ensureStateDir, resolveStateDir} from './state-dir.js'

const tmp = mkdtempSync(join(tmpdir(), 'agent-state-'))
afterAll(() => rmSync(tmp, {recursive: true, force: true}))

describe('state dir', () => {
  it('prefers AGENT_STATE_DIR, made absolute', () => {
    expect(resolveStateDir({AGENT_STATE_DIR: '/x/y'})).toBe('/x/y')
    expect(resolveStateDir({AGENT_STATE_DIR: 'rel'})).toBe(join(process.cwd(), 'rel'))
  })

  it('falls back to /var/lib/agent when writable, else XDG_CONFIG_HOME, else ~/.agent', () => {
    const got = resolveStateDir({XDG_CONFIG_HOME: '/cfg'})
    // As root /var/lib is writable; as a user it is not, and XDG wins.
    expect(['/var/lib/agent', '/cfg/agent']).toContain(got)
    if (got !== '/var/lib/agent') expect(resolveStateDir({})).toBe(join(homedir(), '.agent'))
  })

  it('lays out the dir with mode 0700', () => {
    const root = join(tmp, 'state')
    const p = ensureStateDir(root)
    for (const d of [p.root, p.vms, p.persistRoot, p.logs]) expect(statSync(d).mode & 0o777).toBe(0o700)
    expect(p.db).toBe(join(root, 'agent.db'))
    expect(p.inDir('python-0badc0de')).toBe(join(root, 'vms', 'python-0badc0de', 'in'))
  })

  it('names the path and says what to do when the dir cannot be used', () => {
    const file = join(tmp, 'a-file')
    writeFileSync(file, 'x')
    expect(() => ensureStateDir(join(file, 'sub'))).toThrow(/state dir .*a-file\/sub is not usable/)
    try {
      ensureStateDir(join(file, 'sub'))
    } catch (err) {
      expect((err as {hint?: string}).hint).toMatch(/AGENT_STATE_DIR/)
      expect((err as {exitCode?: number}).exitCode).toBe(5)
    }
  })
})
