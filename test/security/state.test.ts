import {execa, type ResultPromise} from 'execa'
import {randomBytes} from 'node:crypto'
import {existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {agentIn, tempState, TEST_IMAGE_STORE} from '../helpers/agent.js'
import {buildahContainers, runtimeContainers} from '../helpers/host.js'
import {cleanVms, createVm, hostLeftovers, LAUNCHERS, NO_LEFTOVERS, removeStateDir} from './helpers.js'

const DB_ERRORS = /SQLITE_BUSY|database is locked|SQLITE_/

interface Row {
  id: string
  status: string
  lastError: string | null
}

// Concurrency, a missing runtime binary, and state dirs sharing one image store.
describe('16 VMs at once (runc)', () => {
  const st = tempState('agent-sec-parallel-')
  const a = agentIn({...st.env, AGENT_RUNTIME: 'runc'})
  afterAll(async () => {
    await cleanVms(a, st.dir)
    removeStateDir(st.dir)
  })

  it('16 parallel creates then 16 parallel cleans: no database error, unique ids, no orphan', async () => {
    const made = await Promise.all(Array.from({length: 16}, () => a(['vm', 'create', '--language', 'python', '--mem', '32', '--disk', '64'])))
    for (const r of made) {
      expect(r.stderr).not.toMatch(DB_ERRORS)
      expect(r.code, r.stderr).toBe(0)
    }
    const ids = made.map((r) => r.stdout.trim())
    expect(new Set(ids).size).toBe(16)
    const rows = JSON.parse((await a(['vm', 'list', '--all', '--json'])).stdout) as Row[]
    expect(rows.map((v) => v.id).sort()).toEqual([...ids].sort())
    expect(rows.every((v) => v.status === 'running')).toBe(true)
    expect((await runtimeContainers(st.dir, 'runc')).sort()).toEqual(ids.map((id) => `agent-${id}`).sort())

    const cleaned = await Promise.all(ids.map((id) => a(['vm', 'clean', id])))
    for (const r of cleaned) {
      expect(r.stderr).not.toMatch(DB_ERRORS)
      expect(r.code, r.stderr).toBe(0)
    }
    expect(JSON.parse((await a(['vm', 'list', '--all', '--json'])).stdout)).toEqual([])
    expect(await hostLeftovers(st.dir, ids)).toEqual(NO_LEFTOVERS)
  })
})

describe.each(LAUNCHERS)('missing runtime binary (%s)', (runtime) => {
  const st = tempState(`agent-sec-nobin-${runtime}-`)
  const a = agentIn({...st.env, AGENT_RUNTIME: runtime})
  const missing = runtime === 'gvisor' ? {AGENT_RUNSC: '/nonexistent'} : {AGENT_RUNC: '/nonexistent'}
  let id = ''
  beforeAll(async () => {
    id = await createVm(a, ['--mem', '64'])
    expect((await a(['vm', 'exec', '--vm', id, '--cmd', 'echo kept > /root/data'])).code).toBe(0)
  })
  afterAll(async () => {
    await cleanVms(a, st.dir)
    removeStateDir(st.dir)
  })

  it('exec, stop and clean exit 5 with a clear message and lose nothing; with the binary back everything works', async () => {
    const exec = await a(['vm', 'exec', '--vm', id, '--cmd', 'echo hi'], {env: missing})
    expect(exec.code).toBe(5)
    expect(exec.stderr).toMatch(/\/nonexistent is not installed/)
    const stop = await a(['vm', 'stop', id], {env: missing})
    expect(stop.code).toBe(5)
    expect(stop.stderr).toMatch(new RegExp(`launcher ${runtime} is not usable here: /nonexistent is not installed`))
    const clean = await a(['vm', 'clean', id], {env: missing})
    expect(clean.code).toBe(5)
    expect(clean.stderr).toMatch(new RegExp(`launcher ${runtime} is not usable here: /nonexistent is not installed`))
    expect(existsSync(join(st.dir, 'vms', id, 'disk.img'))).toBe(true)
    const rows = JSON.parse((await a(['vm', 'list', '--all', '--json'])).stdout) as Row[]
    expect(rows.map((v) => [v.id, v.status])).toEqual([[id, 'running']])
    const r = await a(['vm', 'exec', '--vm', id, '--cmd', 'cat /root/data'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe('kept\n')
  })

  it('vm list without the binary does not record running VMs as stopped', async () => {
    const blind = await a(['vm', 'list', '--all', '--json'], {env: missing})
    // The sandbox never stopped: it is running all along.
    expect(await runtimeContainers(st.dir, runtime)).toEqual([`agent-${id}`])
    const seenStatus = (JSON.parse(blind.stdout) as Row[]).find((v) => v.id === id)?.status
    const stop = await a(['vm', 'stop', id], {env: missing})
    // Heal the row for what follows, whatever happened.
    await a(['vm', 'list', '--all'])
    expect(seenStatus, 'vm list reported a running VM as stopped because `runsc/runc list` could not run').not.toBe('stopped')
    expect(stop.code, `vm stop said ${stop.code} (${stop.stderr.trim()}) while the sandbox kept running`).toBe(5)
  })
})

describe('an image store shared by several state dirs', () => {
  const mine = tempState('agent-sec-shared-a-')
  const other = tempState('agent-sec-shared-b-')
  const a = agentIn({...mine.env, AGENT_RUNTIME: 'runc'})
  const b = agentIn({...other.env, AGENT_RUNTIME: 'runc'})
  afterAll(async () => {
    await cleanVms(a, mine.dir)
    await cleanVms(b, other.dir)
    removeStateDir(mine.dir)
    removeStateDir(other.dir)
  })

  it('clean --all in one state dir leaves the working containers of another state dir\'s VMs alone', async () => {
    expect(TEST_IMAGE_STORE).toBe(mine.env.AGENT_IMAGE_STORE)
    const id = await createVm(a, ['--mem', '64'])
    expect(await buildahContainers()).toContain(`agent-${id}`)
    const sweep = await b(['vm', 'clean', '--all'])
    expect(sweep.code, sweep.stderr).toBe(0)
    expect(sweep.stderr, 'the other state dir swept this VM as an orphan').not.toContain(id)
    expect(await buildahContainers()).toContain(`agent-${id}`)
    expect((await a(['vm', 'exec', '--vm', id, '--cmd', 'echo fine'])).stdout).toBe('fine\n')
  })
})

// The state database itself failing: damaged, held locked by another process, or its file system
// full. Each is a clear error (exit 5, what happened and what to do), never a stack trace, and
// leaves no half-made row or VM dir behind.
describe('a damaged, locked or full state database', () => {
  const noStack = (stderr: string) => expect(stderr, stderr).not.toMatch(/^\s+at \S+ \(|internal error|Traceback/m)

  it('a corrupt agent.db: exit 5 naming the file and how to recover, for reads and writes', async () => {
    const st = tempState('agent-sec-db-corrupt-')
    const a = agentIn({...st.env, AGENT_RUNTIME: 'runc'})
    try {
      expect((await a(['vm', 'list'])).code).toBe(0)
      for (const junk of [Buffer.from('garbage'), randomBytes(8192)]) {
        writeFileSync(join(st.dir, 'agent.db'), junk)
        rmSync(join(st.dir, 'agent.db-wal'), {force: true})
        rmSync(join(st.dir, 'agent.db-shm'), {force: true})
        for (const args of [['vm', 'list'], ['vm', 'create', '--language', 'python', '--mem', '64']]) {
          const r = await a(args)
          expect(r.code, r.stderr).toBe(5)
          expect(r.stderr).toMatch(/state database .*agent\.db is damaged/)
          expect(r.stderr).toMatch(/mv .*agent\.db .*agent\.db\.bad/)
          noStack(r.stderr)
        }
      }
      expect(readdirSync(join(st.dir, 'vms'))).toEqual([])
    } finally {
      removeStateDir(st.dir)
    }
  })

  it('an agent.db held locked by another process past the busy timeout: exit 5 saying so, no row, no VM dir', async () => {
    const st = tempState('agent-sec-db-locked-')
    const a = agentIn({...st.env, AGENT_RUNTIME: 'runc'})
    const db = join(st.dir, 'agent.db')
    let holder: ResultPromise | undefined
    try {
      expect((await a(['vm', 'list'])).code).toBe(0)
      // Another process holds the write lock for longer than agent's 30 s busy timeout.
      holder = execa('python3', ['-c', `import sqlite3, sys, time\nc = sqlite3.connect(${JSON.stringify(db)}, isolation_level=None)\nc.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(120)`], {reject: false, buffer: false})
      await new Promise<void>((resolve, reject) => {
        holder!.stdout?.once('data', () => resolve())
        void holder!.then((r) => reject(new Error(`lock holder ended: ${r.exitCode}`)))
      })
      const r = await a(['vm', 'create', '--language', 'python', '--mem', '64'])
      expect(r.code, r.stderr).toBe(5)
      expect(r.stderr).toMatch(/state database .*agent\.db stayed locked by another process for 30 s; nothing was changed/)
      expect(r.stderr).toMatch(/fuser /)
      noStack(r.stderr)
      holder.kill('SIGKILL')
      await holder.catch(() => undefined)
      const rows = await a(['vm', 'list', '--all', '--json'])
      expect(rows.code, rows.stderr).toBe(0)
      expect(JSON.parse(rows.stdout)).toEqual([])
      expect(readdirSync(join(st.dir, 'vms'))).toEqual([])
    } finally {
      holder?.kill('SIGKILL')
      await holder?.catch(() => undefined)
      removeStateDir(st.dir)
    }
  }, 120_000)

  it('a full state-dir file system: exit 5 saying so, and once space is back no half row and no VM dir', async () => {
    const dir = mkdtempSync('/var/tmp/agent-sec-db-full-')
    await execa('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', dir])
    const a = agentIn({AGENT_STATE_DIR: dir, AGENT_IMAGE_STORE: TEST_IMAGE_STORE, AGENT_RUNTIME: 'runc'})
    try {
      expect((await a(['vm', 'list'])).code).toBe(0)
      // Fill it: dd stops at ENOSPC.
      await execa('dd', ['if=/dev/zero', `of=${join(dir, 'filler')}`, 'bs=1M', 'count=64'], {reject: false})
      for (const args of [['vm', 'create', '--language', 'python', '--mem', '64'], ['vm', 'list', '--all']]) {
        const r = await a(args)
        expect(r.code, r.stderr).toBe(5)
        expect(r.stderr).toMatch(/the file system holding the state database .* is full; nothing was changed/)
        noStack(r.stderr)
      }
      rmSync(join(dir, 'filler'))
      const rows = await a(['vm', 'list', '--all', '--json'])
      expect(rows.code, rows.stderr).toBe(0)
      expect(JSON.parse(rows.stdout)).toEqual([])
      expect(readdirSync(join(dir, 'vms'))).toEqual([])
    } finally {
      await a(['vm', 'clean', '--all'])
      await execa('umount', [dir], {reject: false})
      rmSync(dir, {recursive: true, force: true})
    }
  })
})
