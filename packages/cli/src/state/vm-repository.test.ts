import {tryRun} from '../system/index.js'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {openVmRepository} from './vm-repository.js'
import {vmRecord, type VmRecord} from './vm-record.js'

const dir = mkdtempSync(join(tmpdir(), 'agent-repo-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))

const record = (id: string, extra: Partial<VmRecord> = {}): VmRecord => vmRecord({id, plugin: 'test@0', image: 'img', imageSource: 'flag', launcher: 'runc', ...extra})

describe('VmRepository', () => {
  it('stores, resolves by id or name, transitions and deletes', async () => {
    const repo = await openVmRepository(join(dir, 'a.db'))
    await repo.insert(record('python-00000001', {name: 'first'}))
    expect((await repo.resolve('first')).id).toBe('python-00000001')
    await expect(repo.insert(record('python-00000002', {name: 'first'}))).rejects.toThrow(/already used by VM python-00000001/)
    await expect(repo.resolve('nope-123')).rejects.toThrow(/VM not found: "nope-123"/)
    expect(await repo.list()).toHaveLength(1)
    await repo.transition('python-00000001', ['creating'], 'running', {containerRef: 'c'})
    await expect(repo.transition('python-00000001', ['creating'], 'running')).rejects.toThrow(/is running, expected creating/)
    const got = await repo.get('python-00000001')
    expect(got?.status).toBe('running')
    expect(got?.containerRef).toBe('c')
    expect(got?.createdAt).toBeInstanceOf(Date)
    expect(await repo.list({status: 'stopped'})).toEqual([])
    await repo.delete('python-00000001')
    expect(await repo.list({all: true})).toEqual([])
    expect(await repo.integrityCheck()).toBe('ok')
    await repo.close()
  })

  it('survives 8 processes inserting and updating rows at once, with no SQLITE_BUSY', async () => {
    const db = join(dir, 'concurrent.db')
    const worker = join(dir, 'worker.mjs')
    const repoModule = new URL('../../dist/state/vm-repository.js', import.meta.url).pathname
    writeFileSync(
      worker,
      `import {openVmRepository} from ${JSON.stringify(repoModule)}
const [db, w] = process.argv.slice(2)
const repo = await openVmRepository(db)
for (let i = 0; i < 50; i++) {
  const id = 'python-' + (Number(w) * 1000 + i).toString(16).padStart(8, '0')
  const now = new Date()
  await repo.insert({id, name: 'w' + w + '-' + i, language: 'python', plugin: 'p@1', image: 'i', imageSource: 'flag', launcher: 'runc',
    cpus: 1, memoryMib: 256, diskMib: 1024, pids: 256, network: 'none', persist: false, status: 'creating',
    containerRef: null, rootfsRef: null, bundleRef: null, ownerPid: process.pid, createdAt: now, updatedAt: now, lastError: null})
  await repo.transition(id, ['creating'], 'running', {ownerPid: null, containerRef: 'agent-' + id})
}
await repo.close()
`,
    )
    const procs = Array.from({length: 8}, (_, w) => tryRun(process.execPath, [worker, db, String(w)]))
    const results = await Promise.all(procs)
    for (const r of results) {
      expect(r.all).not.toMatch(/SQLITE_BUSY/)
      expect(r.exitCode).toBe(0)
    }
    const repo = await openVmRepository(db)
    const rows = await repo.list({all: true})
    expect(rows).toHaveLength(400)
    expect(rows.every((r) => r.status === 'running' && r.containerRef === `agent-${r.id}`)).toBe(true)
    expect(new Set(rows.map((r) => r.name)).size).toBe(400)
    expect(await repo.integrityCheck()).toBe('ok')
    await repo.close()
  })
})
