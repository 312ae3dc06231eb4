import {execa} from 'execa'
import {existsSync, rmSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {ROOT, TEST_IMAGE_STORE, agentIn, tempState} from '../helpers/agent.js'
import {buildahContainers, mountsOf, runtimeContainers, vmDirs} from '../helpers/host.js'
import {waitUntil} from '../helpers/wait.js'

const st = tempState('agent-reconcile-')
const a = agentIn({...st.env, AGENT_RUNTIME: 'runc'})
afterAll(async () => {
  await a(['vm', 'clean', '--all'])
  st.cleanup()
})
const status = async (id: string) => JSON.parse((await a(['vm', 'list', '--all', '--json'])).stdout).find((v: {id: string}) => v.id === id)?.status
const buildah = (args: string[]) => execa('buildah', args, {env: {CONTAINERS_STORAGE_CONF: join(TEST_IMAGE_STORE, 'storage.conf')}, reject: false})

describe('keeping vm list truthful', () => {
  it('shows a sandbox that died behind our back as stopped, and start brings it back', async () => {
    const id = (await a(['vm', 'create', '--language', 'python', '--mem', '64'])).stdout.trim()
    await execa('runc', ['--root', join(st.dir, 'run', 'runc'), 'kill', `agent-${id}`, 'KILL'])
    // Wait for runc itself to see the container stopped (a fixed sleep can be too short on a loaded host).
    const runcState = async () => JSON.parse((await execa('runc', ['--root', join(st.dir, 'run', 'runc'), 'state', `agent-${id}`], {reject: false})).stdout || '{}').status
    expect(await waitUntil(async () => (await runcState()) === 'stopped', 30_000), 'runc never saw the killed container stop').toBe(true)
    expect(await status(id)).toBe('stopped')
    expect((await a(['vm', 'list'])).stdout).not.toContain(id)
    expect((await a(['vm', 'start', id])).code).toBe(0)
    expect((await a(['vm', 'exec', '--vm', id, '--cmd', 'echo back'])).stdout).toBe('back\n')
  })

  it('shows a VM whose sandbox and root filesystem were removed behind our back as missing, and clean handles it', async () => {
    const id = (await a(['vm', 'create', '--language', 'python', '--mem', '64'])).stdout.trim()
    await execa('runc', ['--root', join(st.dir, 'run', 'runc'), 'delete', '--force', `agent-${id}`])
    for (const m of ['rootfs', 'disk']) await execa('umount', ['-l', join(st.dir, 'vms', id, m)], {reject: false})
    await buildah(['rm', `agent-${id}`])
    rmSync(join(st.dir, 'vms', id), {recursive: true, force: true})
    expect(await status(id)).toBe('missing')
    const c = await a(['vm', 'clean', id])
    expect(c.code, c.stderr).toBe(0)
    expect(await status(id)).toBeUndefined()
  })
})

describe('persist', () => {
  it('keeps /persist across clean --keep-persist and attaches it to a new VM with --persist-from', async () => {
    const id = (await a(['vm', 'create', '--language', 'python', '--mem', '64', '--persist'])).stdout.trim()
    expect((await a(['vm', 'exec', '--vm', id, '--cmd', 'echo saved > /persist/state.txt'])).code).toBe(0)
    const c = await a(['vm', 'clean', id, '--keep-persist'])
    expect(c.code, c.stderr).toBe(0)
    // /persist is its own file system: its image is what is kept (test/security/persist.test.ts).
    expect(existsSync(join(st.dir, 'persist', id, 'persist.img'))).toBe(true)
    const next = await a(['vm', 'create', '--language', 'python', '--mem', '64', '--persist-from', id])
    expect(next.code, next.stderr).toBe(0)
    const id2 = next.stdout.trim()
    expect((await a(['vm', 'exec', '--vm', id2, '--cmd', 'cat /persist/state.txt'])).stdout).toBe('saved\n')
    expect(existsSync(join(st.dir, 'persist', id))).toBe(false)
    expect((await a(['vm', 'clean', id2])).code).toBe(0)
    expect(existsSync(join(st.dir, 'persist', id2))).toBe(false)
  })
})

describe('a create that fails half-way', () => {
  it('names the failed step and leaves no container, mount, directory or row', async () => {
    const r = await a(['vm', 'create', '--language', 'python', '--runtime', 'gvisor', '--log-level', 'debug'], {env: {AGENT_RUNSC: join(ROOT, 'test/fixtures/failing-runtime/runsc')}})
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/vm create failed at step "boot": .*simulated boot failure/)
    // Other test files share the image store, so look for this VM's own leftovers by its id.
    const id = /(python-[0-9a-f]{8}): create failed at boot/.exec(r.stderr)?.[1]
    expect(id, r.stderr).toBeDefined()
    expect((await buildahContainers()).filter((c) => c.includes(id!))).toEqual([])
    expect(await runtimeContainers(st.dir, 'gvisor')).toEqual([])
    expect(vmDirs(st.dir)).not.toContain(id)
    expect(await mountsOf(id!)).toEqual([])
    expect(JSON.parse((await a(['vm', 'list', '--all', '--json'])).stdout).map((v: {id: string}) => v.id)).not.toContain(id)
  })
})
