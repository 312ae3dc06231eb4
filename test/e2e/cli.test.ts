import {chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {agent, agentIn, tempState} from '../helpers/agent.js'

const st = tempState()
const a = agentIn(st.env)
afterAll(() => st.cleanup())

describe('agent CLI basics', () => {
  it('--help lists the vm topic and the plugins commands', async () => {
    const r = await a(['--help'])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^\s+vm\s+/m)
    expect(r.stdout).toMatch(/^\s+plugins\s+/m)
    const p = await a(['plugins', '--help'])
    expect(p.stdout).toMatch(/plugins install/)
    expect(p.stdout).toMatch(/plugins uninstall/)
  })

  it('vm list --json prints [] on a fresh state dir, and creates the layout', async () => {
    const r = await a(['vm', 'list', '--json'])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual([])
    for (const d of ['agent.db', 'vms', 'persist', 'logs']) expect(existsSync(join(st.dir, d))).toBe(true)
  })

  it('an unknown command exits non-zero with one clear line and no stack', async () => {
    const r = await a(['vm', 'frobnicate'])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/frobnicate/)
    expect(r.stderr).not.toMatch(/\s+at .*\.js:\d+/)
  })

  it('a bad flag value exits 2 with a one-line message', async () => {
    const r = await a(['vm', 'list', '--status', 'sideways'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/sideways/)
    expect(r.stderr).not.toMatch(/\s+at .*\.js:\d+/)
    const n = await a(['vm', 'create', '--language', 'python', '--mem', 'lots'])
    expect(n.code).toBe(2)
    expect(n.stderr).toMatch(/lots/)
  })

  it('an unusable AGENT_STATE_DIR names the path and says what to do', async () => {
    const file = join(st.dir, 'not-a-dir')
    writeFileSync(file, '')
    const r = await agent(['vm', 'list'], {env: {AGENT_STATE_DIR: join(file, 'state')}})
    expect(r.code).toBe(5)
    expect(r.stderr).toContain(join(file, 'state'))
    expect(r.stderr).toMatch(/AGENT_STATE_DIR/)
    expect(r.stderr).not.toMatch(/\s+at .*\.js:\d+/)
    const ro = join(st.dir, 'ro')
    mkdirSync(ro)
    chmodSync(ro, 0o500)
    // As root, permission bits do not stop writes; /proc does.
    const p = await agent(['vm', 'list'], {env: {AGENT_STATE_DIR: '/proc/agent-state'}})
    expect(p.code).toBe(5)
    expect(p.stderr).toContain('/proc/agent-state')
  })

  it('shows a stack only at --log-level debug, and mirrors logs to a JSON-lines file', async () => {
    const log = join(st.dir, 'logs', 'test.jsonl')
    const r = await a(['vm', 'exec', '--vm', 'nope-00000000', '--cmd', 'true', '--log-level', 'debug', '--log-file', log])
    expect(r.code).toBe(3)
    expect(r.stderr).toMatch(/VM not found: "nope-00000000"/)
    const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    expect(lines.length).toBeGreaterThan(0)
    expect(lines.every((l) => typeof l.level === 'string' && typeof l.message === 'string' && l.timestamp)).toBe(true)
  })

  it('--json keeps stdout to a single JSON document even for errors', async () => {
    const r = await a(['vm', 'stop', 'nope-00000000', '--json'])
    expect(r.code).toBe(3)
    const doc = JSON.parse(r.stdout)
    expect(doc.error.kind).toBe('not_found')
    expect(doc.error.message).toContain('nope-00000000')
  })

  it('every VM command on an unknown id exits "not found" with the id', async () => {
    for (const args of [
      ['vm', 'exec', '--vm', 'ghost-12345678', '--cmd', 'true'],
      ['vm', 'run', '--vm', 'ghost-12345678', '--cmd', 'true'],
      ['vm', 'stop', 'ghost-12345678'],
      ['vm', 'start', 'ghost-12345678'],
      ['vm', 'clean', 'ghost-12345678'],
    ]) {
      const r = await a(args)
      expect(r.code, args.join(' ')).toBe(3)
      expect(r.stderr).toContain('ghost-12345678')
    }
  })

  it('refuses ids holding shell metacharacters before anything runs', async () => {
    for (const id of ['$(touch /tmp/pwned)', 'a;rm -rf x', '`id`', 'a\nb']) {
      const r = await a(['vm', 'exec', '--vm', id, '--cmd', 'true'])
      expect(r.code).toBe(2)
      expect(r.stderr).toMatch(/invalid VM id or name/)
    }
    expect(existsSync('/tmp/pwned')).toBe(false)
  })

  it('--all with --vm is refused as conflicting flags', async () => {
    const r = await a(['vm', 'stop', '--all', '--vm', 'x'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/--all|--vm/)
  })

  it('--all with no VMs says so and exits 0', async () => {
    for (const verb of ['stop', 'clean']) {
      const r = await a(['vm', verb, '--all'])
      expect(r.code).toBe(0)
      expect(r.stderr).toMatch(/no VMs/)
    }
    const e = await a(['vm', 'exec', '--all', '--hello'])
    expect(e.code).toBe(0)
    expect(e.stderr).toMatch(/no running VMs/)
  })
})
