import {describe, expect, it} from 'vitest'
import {vmForTests} from '../helpers/agent.js'

describe.each(['gvisor', 'runc'] as const)('vm inspect on %s', (launcher) => {
  let id = ''
  const {st, a} = vmForTests({
    prefix: `agent-inspect-${launcher}-`,
    launcher,
    create: ['--disk', '256', '--pids', '100', '--cpu', '0.5', '--persist', '--name', `insp-${launcher}`],
    onCreate: (v) => (id = v),
  })

  it('shows the record, limits, and usage read from the cgroup and the disk', async () => {
    // 20 MB written to the disk, and a process left running: both must show.
    const w = await a(['vm', 'exec', '--vm', id, '--', 'sh', '-c', 'head -c 20000000 /dev/urandom > /root/blob && sync'])
    expect(w.code, w.stderr).toBe(0)
    const r = await a(['vm', 'inspect', `insp-${launcher}`, '--json'])
    expect(r.code, r.stderr).toBe(0)
    const doc = JSON.parse(r.stdout)
    expect(doc).toMatchObject({
      id,
      name: `insp-${launcher}`,
      status: 'running',
      language: 'python',
      launcher,
      image: expect.stringMatching(/python/),
      limits: {cpus: 0.5, memoryMib: 128, diskMib: 256, pids: 100},
      network: 'none',
      persistDir: expect.stringContaining(id),
      lastError: null,
    })
    expect(doc.uptimeSec).toBeGreaterThanOrEqual(0)
    expect(doc.uptimeSec).toBeLessThan(600)
    const u = doc.usage
    expect(u.unknown).toEqual({})
    expect(u.memoryBytes).toBeGreaterThan(0)
    expect(u.memoryPeakBytes).toBeGreaterThanOrEqual(u.memoryBytes)
    expect(u.cpuSeconds).toBeGreaterThan(0)
    expect(u.pids).toBeGreaterThan(0)
    expect(u.diskUsedBytes).toBeGreaterThan(20_000_000)
    expect(u.diskTotalBytes).toBeGreaterThan(200 * 1024 * 1024)
    expect(u.diskTotalBytes).toBeLessThanOrEqual(256 * 1024 * 1024)

    const text = await a(['vm', 'inspect', id])
    expect(text.code).toBe(0)
    expect(text.stdout).toMatch(/^limits: +0.5 CPU, 128 MiB memory, 256 MiB disk, 100 pids$/m)
    expect(text.stdout).toMatch(/^disk used: +\d+\.\d MiB of /m)
  })

  it('says why the counters are unknown for a stopped VM, and keeps the disk figure', async () => {
    expect((await a(['vm', 'stop', id])).code).toBe(0)
    const doc = JSON.parse((await a(['vm', 'inspect', id, '--json'])).stdout)
    expect(doc.status).toBe('stopped')
    expect(doc.uptimeSec).toBeNull()
    expect(doc.usage.memoryBytes).toBeUndefined()
    expect(doc.usage.unknown.memoryBytes).toBe('the VM is not running')
    expect(doc.usage.diskUsedBytes).toBeGreaterThan(20_000_000)
    expect((await a(['vm', 'inspect', 'no-such-vm'])).code).toBe(3)
  })
})
