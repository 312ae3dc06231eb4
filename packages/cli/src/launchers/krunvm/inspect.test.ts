import {describe, expect, it} from 'vitest'
import {AgentError} from '../../errors.js'
import {vmRecord} from '../../state/vm-record.js'
import {KrunvmLauncher} from './launcher.js'

// What krunvm cannot do for vm inspect, vm cp on a stopped VM and vm snapshot, it says, with a way out.
describe('krunvm: inspect, stopped files, snapshot', () => {
  const l = new KrunvmLauncher({env: {}, platform: 'linux'})
  const vm = vmRecord({id: 'python-0000abcd', launcher: 'krunvm'})

  it('reports no usage counters, each with the reason', async () => {
    const u = await l.usage()
    expect(u.memoryBytes).toBeUndefined()
    expect(Object.keys(u.unknown).sort()).toEqual(['cpuSeconds', 'diskUsedBytes', 'memoryBytes', 'pids', 'startedAt'])
    expect(u.unknown.memoryBytes).toMatch(/each command boots its own microVM/)
  })

  it('refuses a host view of a stopped VM and a snapshot as unavailable, with a hint', async () => {
    for (const p of [l.stoppedFiles(vm), l.snapshot(vm)]) {
      const err = await p.catch((e: unknown) => e)
      expect(err).toBeInstanceOf(AgentError)
      expect(err).toMatchObject({kind: 'unavailable', hint: expect.any(String)})
    }
  })
})
