/**
 * Warm pools of `agent serve` (issue 13) against the real `e2b` SDK: a real server child with
 * `--pool python=1` on a fresh state dir. The pool VM is a VM of the state (`vm list` marks it
 * `pool`); a create claims it and gets its env, metadata and lifetime; a refill boots the next
 * one; an empty pool means a cold boot; the server cleans the pool when it stops, unless
 * `--keep-pool`, and a later server takes a kept pool VM back.
 */
import {freePort} from '../helpers/ports.js'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {agentIn, tempState} from '../helpers/agent.js'
import {startServe, type ServeChild} from '../helpers/serve.js'
import {waitUntil} from '../helpers/wait.js'

const st = tempState('agent-serve-pool-')
const a = agentIn(st.env)
const API_KEY = 'pool-key-0123456789abcdef'
/** A pool boot is a cold VM boot: seconds, more on a loaded 2-core machine. */
const BOOT_MS = 150_000

interface Server extends ServeChild {
  pool: () => Promise<Record<string, number>>
  stop: () => Promise<void>
}

async function startServer(extra: string[]): Promise<Server> {
  const child = await startServe({port: await freePort(), env: st.env, apiKey: API_KEY, extra})
  const {proc, url} = child
  process.env.E2B_API_URL = url
  process.env.E2B_SANDBOX_URL = url
  process.env.E2B_API_KEY = API_KEY
  return {
    ...child,
    pool: async () => ((await (await fetch(`${url}/health`)).json()) as {pool: Record<string, number>}).pool,
    stop: async () => {
      proc.kill('SIGTERM')
      const r = await proc
      expect(r.exitCode, child.output()).toBe(0)
    },
  }
}

interface Listed {
  id: string
  status: string
  origin: string
}
const vmList = async () => JSON.parse((await a(['vm', 'list', '--all', '--json'])).stdout) as Listed[]
const poolVms = async () => (await vmList()).filter((v) => v.origin === 'pool')

let E2B: typeof import('e2b')
let server: Server | undefined

beforeAll(async () => {
  E2B = await import('e2b')
})

afterAll(async () => {
  if (server && server.proc.exitCode === null) {
    server.proc.kill('SIGTERM')
    await server.proc
  }
  await a(['vm', 'clean', '--all'])
  st.cleanup()
})

describe('agent serve --pool python=1', () => {
  let poolId: string
  const kept: string[] = []

  beforeAll(async () => {
    server = await startServer(['--pool', 'python=1'])
  })

  it('boots a pool VM that vm list shows, marked as pool, and the E2B list does not', async () => {
    expect(await waitUntil(async () => (await server!.pool()).python === 1, BOOT_MS, 200)).toBe(true)
    const pool = await poolVms()
    expect(pool).toHaveLength(1)
    expect(pool[0].status).toBe('running')
    poolId = pool[0].id
    const table = (await a(['vm', 'list'])).stdout
    expect(table).toMatch(/\bORIGIN\b/)
    expect(table).toMatch(new RegExp(`^${poolId}\\s.*\\brunning\\s+pool\\s`, 'm'))
    expect((await E2B.Sandbox.list().nextItems()).map((s) => s.sandboxId)).not.toContain(poolId)
  })

  it('a create claims the pool VM and applies its env, metadata and lifetime; an empty pool means a cold boot, not an error', async () => {
    // Two creates at once against a pool of one: one claims the pool VM, the other finds the
    // pool empty (its refill is a full boot, seconds away) and boots a VM of its own.
    const t0 = Date.now()
    const [x, y] = await Promise.all([
      E2B.Sandbox.create('python', {timeoutMs: 600_000, envs: {POOL_VAR: 'x'}, metadata: {suite: 'pool', who: 'x'}}),
      E2B.Sandbox.create('python', {timeoutMs: 300_000, envs: {POOL_VAR: 'y'}, metadata: {suite: 'pool', who: 'y'}}),
    ])
    const [claimed, cold] = x.sandboxId === poolId ? [x, y] : [y, x]
    expect(claimed.sandboxId).toBe(poolId)
    expect(cold.sandboxId).not.toBe(poolId)
    for (const [s, who, lifeMs] of [
      [x, 'x', 600_000],
      [y, 'y', 300_000],
    ] as const) {
      // The claimed VM gets the env, metadata and lifetime of its create, like the cold one.
      expect((await s.commands.run('echo "$POOL_VAR"')).stdout, who).toBe(`${who}\n`)
      const info = await s.getInfo()
      expect(info.metadata, who).toEqual({suite: 'pool', who})
      expect(info.endAt.getTime() - t0, who).toBeGreaterThan(lifeMs - 10_000)
      expect(info.endAt.getTime() - Date.now(), who).toBeLessThanOrEqual(lifeMs)
    }
    const listed = await E2B.Sandbox.list({query: {metadata: {suite: 'pool'}}}).nextItems()
    expect(listed.map((s) => s.sandboxId).sort()).toEqual([x.sandboxId, y.sandboxId].sort())
    const vms = await vmList()
    for (const s of [claimed, cold]) expect(vms.find((v) => v.id === s.sandboxId)?.origin).toBe('api')
    kept.push(claimed.sandboxId, cold.sandboxId)
  })

  it('a refill boots the next pool VM after the claim', async () => {
    expect(await waitUntil(async () => (await server!.pool()).python === 1, BOOT_MS, 200)).toBe(true)
    const pool = await poolVms()
    expect(pool).toHaveLength(1)
    expect(kept).not.toContain(pool[0].id)
    expect(pool[0].status).toBe('running')
    poolId = pool[0].id
  })

  it('cleans the pool VM when the server stops; sandboxes stay', async () => {
    await server!.stop()
    const after = await vmList()
    expect(after.find((v) => v.id === poolId)).toBeUndefined()
    expect(after.filter((v) => v.origin === 'pool')).toEqual([])
    for (const id of kept) expect(after.find((v) => v.id === id)?.status, id).toBe('running')
  })

  it('with --keep-pool leaves the pool VM running, and the next server takes it back', async () => {
    server = await startServer(['--pool', 'python=1', '--keep-pool'])
    expect(await waitUntil(async () => (await server!.pool()).python === 1, BOOT_MS, 200)).toBe(true)
    const [vm] = await poolVms()
    await server.stop()
    expect((await poolVms()).map((v) => `${v.id}:${v.status}`)).toEqual([`${vm.id}:running`])
    server = await startServer(['--pool', 'python=1'])
    // Taken back at start, not booted anew: the pool is full as soon as the server answers.
    expect(await server.pool()).toEqual({python: 1})
    expect(server.output()).toMatch(/1 pool VM\(s\)/)
    const s = await E2B.Sandbox.create('python', {timeoutMs: 120_000})
    expect(s.sandboxId).toBe(vm.id)
    expect((await s.commands.run('echo adopted')).stdout).toBe('adopted\n')
    await s.kill()
    await server.stop()
    expect(await poolVms()).toEqual([])
  })
})
