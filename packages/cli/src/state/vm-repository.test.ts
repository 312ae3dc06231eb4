import {tryRun} from '../system/index.js'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {openVmRepository} from './vm-repository.js'
import {Sqlite} from './sqlite.js'
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

  it('round-trips every field: lists, booleans, dates to the millisecond, nulls', async () => {
    const repo = await openVmRepository(join(dir, 'b.db'))
    const vm = record('python-000000b1', {name: 'b', version: '3.13', egressAllow: ['pypi.org', '10.0.0.0/8'], allowHosts: ['[::1]:80'], persist: true, persistMib: 64, createdAt: new Date('2026-01-02T03:04:05.678Z'), updatedAt: new Date('2026-01-02T03:04:05.009Z'), lastError: 'it\'s "quoted"'})
    await repo.insert(vm)
    expect(await repo.get(vm.id)).toEqual(vm)
    const bare = record('python-000000b2', {persist: false})
    await repo.insert(bare)
    expect(await repo.get(bare.id)).toEqual(bare)
    const moved = await repo.update(bare.id, {egressAllow: ['a.example'], containerRef: undefined, rootfsRef: 'r'})
    expect(moved).toMatchObject({egressAllow: ['a.example'], rootfsRef: 'r', containerRef: null, persist: false})
    expect(moved.updatedAt.getTime()).toBeGreaterThanOrEqual(bare.updatedAt.getTime())
    await repo.transition(vm.id, ['creating'], 'stopped')
    expect((await repo.list()).map((v) => v.id)).toEqual([bare.id]) // by default: running and creating only
    expect((await repo.list({status: 'stopped'})).map((v) => v.id)).toEqual([vm.id])
    await repo.close()
  })

  it('reads rows as TypeORM wrote them (state dirs from before the sqlite3 layer)', async () => {
    const file = join(dir, 'c.db')
    await (await openVmRepository(file)).close() // schema and migrations table, as any agent makes them
    const db = await Sqlite.open(file, 1000)
    // TypeORM's sqlite encodings: UTC 'YYYY-MM-DD HH:MM:SS.SSS', booleans 1/0, simple-json text.
    await db.run(`INSERT INTO "vm" ("id","name","language","version","plugin","image","image_source","launcher","cpus","memory_mib","disk_mib","pids","network","egress_allow","allow_hosts","persist","persist_mib","status","container_ref","rootfs_ref","bundle_ref","owner_pid","created_at","updated_at","last_error")
      VALUES ('ruby-0000000c', NULL, 'ruby', NULL, 'r@1', 'img', 'flag', 'gvisor', 0.5, 128, 1024, 64, 'allow', '["rubygems.org"]', NULL, 1, NULL, 'running', 'agent-ruby-0000000c', NULL, NULL, 4242, '2026-11-30 23:59:58.123', '2026-12-01 00:00:01.000', NULL)`)
    await db.close()
    const repo = await openVmRepository(file)
    expect(await repo.resolve('ruby-0000000c')).toEqual({
      id: 'ruby-0000000c', name: null, language: 'ruby', version: null, plugin: 'r@1', image: 'img', imageSource: 'flag', launcher: 'gvisor', cpus: 0.5, memoryMib: 128, diskMib: 1024, pids: 64,
      network: 'allow', egressAllow: ['rubygems.org'], allowHosts: null, persist: true, persistMib: null, status: 'running', containerRef: 'agent-ruby-0000000c', rootfsRef: null, bundleRef: null, ownerPid: 4242,
      createdAt: new Date('2026-11-30T23:59:58.123Z'), updatedAt: new Date('2026-12-01T00:00:01.000Z'), lastError: null,
    })
    expect((await repo.list()).map((v) => v.id)).toEqual(['ruby-0000000c'])
    await repo.close()
  })

  it('brings a database made by an older agent (first migration only) up to date', async () => {
    const file = join(dir, 'old.db')
    const db = await Sqlite.open(file, 1000)
    const {CreateVm1764480000000} = await import('./migrations/1764480000000-create-vm.js')
    await new CreateVm1764480000000().up({query: (sql: string) => db.all(sql)} as never)
    await db.run('CREATE TABLE "migrations" ("id" integer PRIMARY KEY AUTOINCREMENT NOT NULL, "timestamp" bigint NOT NULL, "name" varchar NOT NULL)')
    await db.run(`INSERT INTO "migrations" ("timestamp", "name") VALUES (1764480000000, 'CreateVm1764480000000')`)
    await db.close()
    const repo = await openVmRepository(file)
    const vm = record('python-000000d1', {version: '3.12', persistMib: 32, egressAllow: ['x.example']})
    await repo.insert(vm)
    expect(await repo.get(vm.id)).toEqual(vm)
    await repo.close()
    const check = await Sqlite.open(file, 1000)
    expect((await check.all<{name: string}>('SELECT "name" FROM "migrations" ORDER BY "id"')).map((r) => r.name)).toEqual(['CreateVm1764480000000', 'AddVmVersion1764600000000', 'AddEgressAndPersistSize1764800000000'])
    await check.close()
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
