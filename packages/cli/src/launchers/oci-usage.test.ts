import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {cgroupUsage, processStartedAt} from './oci-usage.js'

describe('cgroupUsage', () => {
  let root: string
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'oci-usage-'))
  })
  afterEach(() => rmSync(root, {recursive: true, force: true}))
  const put = (rel: string, text: string) => {
    mkdirSync(join(root, rel, '..'), {recursive: true})
    writeFileSync(join(root, rel), text)
  }

  it('reads cgroup v1 counters from each controller under agent/<id>', () => {
    put('memory/agent/py-1/memory.usage_in_bytes', '1048576\n')
    put('memory/agent/py-1/memory.max_usage_in_bytes', '2097152\n')
    put('memory/agent/py-1/memory.limit_in_bytes', '9223372036854771712\n')
    put('cpuacct/agent/py-1/cpuacct.usage', '1500000000\n')
    const u = cgroupUsage('py-1', true, {cgroupRoot: root})
    expect(u).toMatchObject({memoryBytes: 1048576, memoryPeakBytes: 2097152, cpuSeconds: 1.5})
    // No limit is no number, and a missing counter is named with its path.
    expect(u.memoryLimitBytes).toBeUndefined()
    expect(u.pids).toBeUndefined()
    expect(u.unknown.pids).toMatch(/pids\/agent\/py-1\/pids.current/)
  })

  it('reads cgroup v2 counters from agent/<id>', () => {
    put('cgroup.controllers', 'memory pids cpu\n')
    put('agent/py-1/memory.current', '4096\n')
    put('agent/py-1/memory.peak', '8192\n')
    put('agent/py-1/memory.max', 'max\n')
    put('agent/py-1/pids.current', '7\n')
    put('agent/py-1/cpu.stat', 'usage_usec 2500000\nuser_usec 1\n')
    expect(cgroupUsage('py-1', true, {cgroupRoot: root})).toEqual({memoryBytes: 4096, memoryPeakBytes: 8192, pids: 7, cpuSeconds: 2.5, unknown: {}})
  })

  it('says why nothing is read for a VM that is not running', () => {
    const u = cgroupUsage('py-1', false, {cgroupRoot: root})
    expect(u.memoryBytes).toBeUndefined()
    expect(u.unknown.memoryBytes).toBe('the VM is not running')
  })

  it('dates a process from /proc/<pid>/stat and the boot time', () => {
    put('42/stat', `42 (a (weird) name) S ${Array.from({length: 18}, () => '0').join(' ')} 12345 0 0\n`)
    put('stat', 'cpu 1 2 3\nbtime 1700000000\n')
    expect(processStartedAt(42, root)).toBe(new Date((1700000000 + 123.45) * 1000).toISOString())
    expect(processStartedAt(43, root)).toBeUndefined()
  })
})
