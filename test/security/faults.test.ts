import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {agentIn, tempState} from '../helpers/agent.js'
import {runtimeContainers, vmDirs} from '../helpers/host.js'
import {cleanVms, createVm, hostLeftovers, LAUNCHERS, NO_LEFTOVERS, removeStateDir, spawnAgent, waitForStderr} from './helpers.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Row {
  id: string
  status: string
  lastError: string | null
}

async function kill9(proc: ReturnType<typeof spawnAgent>['proc']): Promise<void> {
  try {
    process.kill(proc.pid!, 'SIGKILL')
  } catch {
    // already ended
  }
  await proc.catch(() => undefined)
}

// `kill -9` of agent at chosen points (AGENT_TEST_PAUSE) and at blind moments inside the launcher;
// afterwards `vm list --all` tells the truth and `vm clean --all` removes every leftover.
describe.each(LAUNCHERS)('kill -9 of agent on %s', (runtime) => {
  const st = tempState(`agent-sec-kill-${runtime}-`)
  const env = {...st.env, AGENT_RUNTIME: runtime}
  const a = agentIn(env)
  const list = async (): Promise<Row[]> => {
    const r = await a(['vm', 'list', '--all', '--json'])
    expect(r.code, r.stderr).toBe(0)
    return JSON.parse(r.stdout)
  }
  const seen = new Set<string>()
  let target = ''

  beforeAll(async () => {
    target = await createVm(a, ['--mem', '64'])
    seen.add(target)
  })
  afterAll(async () => {
    await cleanVms(a, st.dir)
    removeStateDir(st.dir)
  })

  it('create killed after the row is made, and at blind moments: the list shows each as failed (or running if it finished)', async () => {
    const before = new Set((await list()).map((v) => v.id))
    const create = ['vm', 'create', '--language', 'python', '--mem', '64', '--network', 'allow_all']
    // At the pause: row and dirs made, nothing from the launcher yet.
    {
      const c = spawnAgent(create, {...env, AGENT_TEST_PAUSE: 'create:3000'})
      await waitForStderr(c.proc, 'agent: test pause at create')
      await kill9(c.proc)
    }
    // In the launcher's middle: buildah container, disk, overlay, netns, slirp4netns, boot.
    for (const ms of [150, 600, 1200]) {
      const c = spawnAgent(create, {...env, AGENT_TEST_PAUSE: 'create:1'})
      await waitForStderr(c.proc, 'agent: test pause at create')
      await sleep(ms)
      await kill9(c.proc)
    }
    // Blind: no pause at all.
    for (const ms of [500, 1500]) {
      const c = spawnAgent(create, env)
      await sleep(ms)
      await kill9(c.proc)
    }
    const rows = (await list()).filter((v) => !before.has(v.id))
    for (const v of rows) seen.add(v.id)
    for (const d of vmDirs(st.dir)) seen.add(d)
    expect(rows.length).toBeGreaterThanOrEqual(4) // at least the paused ones made their rows
    for (const v of rows) {
      expect(['failed', 'running'], `${v.id}: ${v.status}`).toContain(v.status)
      if (v.status === 'failed') expect(v.lastError).toMatch(/agent \(pid \d+\) died while creating this VM/)
    }
    expect(rows.filter((v) => v.status === 'failed').length).toBeGreaterThanOrEqual(1)
    const running = new Set(await runtimeContainers(st.dir, runtime))
    for (const v of rows.filter((r) => r.status === 'running')) expect(running.has(`agent-${v.id}`)).toBe(true)
  })

  it('exec killed at the pause and mid-command: the VM is still running and answers', async () => {
    const paused = spawnAgent(['vm', 'exec', '--vm', target, '--cmd', 'echo never'], {...env, AGENT_TEST_PAUSE: 'exec:3000'})
    await waitForStderr(paused.proc, 'agent: test pause at exec')
    await kill9(paused.proc)
    const mid = spawnAgent(['vm', 'exec', '--vm', target, '--timeout', '8', '--cmd', 'echo started; sleep 20'], env)
    const t0 = Date.now()
    while (mid.bytes() === 0 && Date.now() - t0 < 30_000) await sleep(50)
    await kill9(mid.proc)
    expect((await list()).find((v) => v.id === target)?.status).toBe('running')
    const r = await a(['vm', 'exec', '--vm', target, '--cmd', 'echo alive'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe('alive\n')
  })

  it('clean: a live cleaner holds the VM (exit 4); killed, it leaves the VM failed, never half-listed', async () => {
    const v = await createVm(a, ['--mem', '64', '--network', 'allow_all'])
    seen.add(v)
    // Long pause (it is killed anyway): the second agent must start while the first still holds the VM.
    const c = spawnAgent(['vm', 'clean', v], {...env, AGENT_TEST_PAUSE: 'clean:60000'})
    await waitForStderr(c.proc, 'agent: test pause at clean')
    const second = await a(['vm', 'clean', v])
    expect(second.code).toBe(4)
    expect(second.stderr).toMatch(new RegExp(`VM ${v} is being cleaned by agent pid \\d+`))
    await kill9(c.proc)
    const row = (await list()).find((x) => x.id === v)
    expect(row?.status).toBe('failed')
    expect(row?.lastError).toMatch(/died while cleaning this VM/)
    // Killed inside the launcher's removal: the row is either gone (it finished) or failed.
    const w = await createVm(a, ['--mem', '64', '--network', 'allow_all'])
    seen.add(w)
    const mid = spawnAgent(['vm', 'clean', w], {...env, AGENT_TEST_PAUSE: 'clean:1'})
    await waitForStderr(mid.proc, 'agent: test pause at clean')
    await sleep(300)
    await kill9(mid.proc)
    const wr = (await list()).find((x) => x.id === w)
    if (wr) expect(wr.status).toBe('failed')
  })

  // Every step the launcher reports (vm-service's stepHook pauses there: AGENT_TEST_PAUSE=verb:step:ms).
  // The VMs have the most to leave behind: a netns with slirp4netns, nft rules and a filtering DNS
  // (allow list with a domain; nothing is ever asked of it), and a loop-mounted /persist image.
  const BOOT_STEPS = ['working container', 'disk', 'root filesystem', 'network', 'bundle', 'boot']
  const STOP_STEPS = ['stop sandbox', 'stop network']
  const CLEAN_STEPS = [...STOP_STEPS, 'unmount root filesystem', 'remove working container', 'remove files']
  const rich = ['--mem', '64', '--network', 'allow:allowed.test', '--persist', '--persist-size', '32']

  async function killedAt(args: string[], point: string): Promise<void> {
    const c = spawnAgent(args, {...env, AGENT_TEST_PAUSE: `${point}:120000`})
    await waitForStderr(c.proc, `agent: test pause at ${point}`)
    await kill9(c.proc)
  }
  const statusOf = async (id: string) => (await list()).find((v) => v.id === id)

  it('killed at every step of create, stop, start and clean: each VM is listed truthfully, and stop, start or clean put it right', async () => {
    const before = new Set((await list()).map((v) => v.id))
    for (const step of BOOT_STEPS) await killedAt(['vm', 'create', '--language', 'python', ...rich], `create:${step}`)
    const made = (await list()).filter((v) => !before.has(v.id))
    for (const v of made) seen.add(v.id)
    expect(made.length, 'each killed create left its row').toBe(BOOT_STEPS.length)
    for (const v of made) {
      expect(v.status, v.id).toBe('failed')
      expect(v.lastError).toMatch(/agent \(pid \d+\) died while creating this VM/)
    }

    const v = await createVm(a, rich)
    seen.add(v)
    expect((await a(['vm', 'exec', '--vm', v, '--cmd', 'echo kept > /persist/k'])).code).toBe(0)
    for (const step of STOP_STEPS) {
      await killedAt(['vm', 'stop', v], `stop:${step}`)
      expect(['running', 'stopped']).toContain((await statusOf(v))?.status)
      const again = await a(['vm', 'stop', v])
      expect(again.code, again.stderr).toBe(0)
      expect((await statusOf(v))?.status).toBe('stopped')
      if (step !== STOP_STEPS.at(-1)) expect((await a(['vm', 'start', v])).code).toBe(0)
    }
    for (const step of BOOT_STEPS) {
      await killedAt(['vm', 'start', v], `start:${step}`)
      expect(['running', 'stopped']).toContain((await statusOf(v))?.status)
      const up = await a(['vm', 'start', v])
      expect(up.code, `start after a start killed at ${step}: ${up.stderr}`).toBe(0)
      const r = await a(['vm', 'exec', '--vm', v, '--cmd', 'cat /persist/k'])
      expect(r.stdout, `after a start killed at ${step}: ${r.stderr}`).toBe('kept\n')
      expect((await a(['vm', 'stop', v])).code).toBe(0)
    }
    for (const step of CLEAN_STEPS) {
      await killedAt(['vm', 'clean', v], `clean:${step}`)
      const row = await statusOf(v)
      expect(row?.status, `clean killed at ${step}`).toBe('failed')
      expect(row?.lastError).toMatch(/died while cleaning this VM/)
    }
    // What the last killed clean left, a plain clean finishes.
    const done = await a(['vm', 'clean', v])
    expect(done.code, done.stderr).toBe(0)
    expect(await statusOf(v)).toBeUndefined()
  }, 900_000)

  it('clean --all removes every leftover: runtime and working containers, dirs, mounts, loop devices, slirp4netns, cgroups, rows', async () => {
    for (const d of vmDirs(st.dir)) seen.add(d)
    const r = await a(['vm', 'clean', '--all'])
    expect(r.code, r.stderr).toBe(0)
    expect(await list()).toEqual([])
    expect(await hostLeftovers(st.dir, [...seen])).toEqual(NO_LEFTOVERS)
  })
})
