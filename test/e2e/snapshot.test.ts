import {afterAll, describe, expect, it} from 'vitest'
import {Buildah} from '../../packages/cli/src/images/buildah.js'
import {imageStore} from '../../packages/cli/src/images/storage.js'
import {TEST_IMAGE_STORE, vmForTests} from '../helpers/agent.js'

describe.each(['gvisor', 'runc'] as const)('vm snapshot on %s', (launcher) => {
  const tag = `localhost/agent-test/snap-${launcher}-${process.pid}:1`
  let id = ''
  const {st, a} = vmForTests({prefix: `agent-snap-${launcher}-`, launcher, onCreate: (v) => (id = v)})
  // Registered after vmForTests' hook, so it runs first (hooks unwind as a stack).
  afterAll(async () => {
    await a(['vm', 'clean', '--all'])
    await a(['image', 'rm', tag])
  })

  it('commits a running VM\'s files into an image that a new VM starts from; the VM runs on', async () => {
    const w = await a(['vm', 'exec', '--vm', id, '--', 'sh', '-c', 'mkdir -p /opt/app && echo prepared > /opt/app/state.txt && chmod 640 /opt/app/state.txt && rm /etc/debian_version'])
    expect(w.code, w.stderr).toBe(0)
    // The same sandbox before and after: paused, not rebooted.
    const bootedAt = async () => JSON.parse((await a(['vm', 'inspect', id, '--json'])).stdout).usage.startedAt as string
    const before = await bootedAt()
    expect(before).toMatch(/^\d{4}-/)
    const s = await a(['vm', 'snapshot', id, '--tag', tag, '--json'])
    expect(s.code, s.stderr).toBe(0)
    const doc = JSON.parse(s.stdout)
    expect(doc).toMatchObject({vm: id, image: tag, held: 'paused', language: expect.stringMatching(/^python/)})
    const alive = await a(['vm', 'exec', '--vm', id, '--', 'cat', '/opt/app/state.txt'])
    expect(alive.code, alive.stderr).toBe(0)
    expect(alive.stdout).toBe('prepared\n')
    expect(await bootedAt()).toBe(before)

    const list = await a(['image', 'list', '--json'])
    expect(JSON.parse(list.stdout).map((r: {name: string}) => r.name)).toContain(tag)
    const info = await new Buildah(imageStore(st.dir, {AGENT_IMAGE_STORE: TEST_IMAGE_STORE})).inspectImage(tag)
    const labels = (info as {OCIv1?: {config?: {Labels?: Record<string, string>}}}).OCIv1?.config?.Labels ?? {}
    expect(labels).toMatchObject({'agent.snapshot.vm': id, 'agent.snapshot.language': expect.stringMatching(/^python/), 'agent.snapshot.created': expect.stringMatching(/^\d{4}-/)})

    const c = await a(['vm', 'create', '--language', 'python', '--image', tag, '--mem', '128'])
    expect(c.code, c.stderr).toBe(0)
    const copy = c.stdout.trim()
    const seen = await a(['vm', 'exec', '--vm', copy, '--', 'sh', '-c', 'stat -c "%a" /opt/app/state.txt; cat /opt/app/state.txt; test -e /etc/debian_version && echo still-there; hostname'])
    expect(seen.code, seen.stderr).toBe(0)
    // The file, its mode, and the deletion (an overlay whiteout) all carried over; the hostname is the new VM's.
    expect(seen.stdout).toBe(`640\nprepared\n${copy}\n`)
  })

  it('snapshots a stopped VM, which stays stopped', async () => {
    expect((await a(['vm', 'stop', id])).code).toBe(0)
    const s = await a(['vm', 'snapshot', id, '--tag', tag, '--json'])
    expect(s.code, s.stderr).toBe(0)
    expect(JSON.parse(s.stdout).held).toBe('not running')
    const vms = JSON.parse((await a(['vm', 'list', '--all', '--json'])).stdout)
    expect(vms.find((v: {id: string}) => v.id === id).status).toBe('stopped')
    const bad = await a(['vm', 'snapshot', id, '--tag', 'Not A Ref'])
    expect(bad.code).toBe(2)
  })
})
