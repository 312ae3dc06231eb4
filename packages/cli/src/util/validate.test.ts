import os from 'node:os'
import {describe, expect, it} from 'vitest'
import {checkLimits, checkName, checkVmRef, parseEnv} from './validate.js'

describe('validation', () => {
  it('refuses ids and names with shell metacharacters or control characters', () => {
    for (const bad of ['$(touch /tmp/pwned)', 'a;b', '`id`', 'a\nb', '../x', '', '-rf', 'a b'])
      expect(() => checkVmRef(bad)).toThrow(/invalid VM id or name/)
    expect(checkVmRef('python-0badc0de')).toBe('python-0badc0de')
    expect(() => checkName('python-0badc0de')).toThrow(/looks like a VM id/)
  })

  it('refuses zero, negative and absurd limits with the allowed range', () => {
    const ok = {cpus: 1, memoryMib: 256, diskMib: 1024, pids: 256}
    expect(checkLimits(ok)).toEqual(ok)
    expect(() => checkLimits({...ok, cpus: 0})).toThrow(/--cpu must be between/)
    expect(() => checkLimits({...ok, cpus: 4096})).toThrow(/--cpu must be between/)
    expect(() => checkLimits({...ok, memoryMib: -1})).toThrow(/--mem must be between/)
    expect(() => checkLimits({...ok, memoryMib: 1e9})).toThrow(/--mem must be between/)
    expect(() => checkLimits({...ok, pids: 1})).toThrow(/--pids/)
  })

  it('a remote launcher (a cluster) is not bounded by this host\'s size, only by the absolute ranges', () => {
    const big = {cpus: os.cpus().length + 8, memoryMib: Math.floor(os.totalmem() / 1048576) + 1024, diskMib: 1024, pids: 256}
    expect(() => checkLimits(big)).toThrow(/--cpu must be between .* on this host/)
    expect(checkLimits(big, true)).toEqual(big)
    expect(() => checkLimits({...big, cpus: 4096}, true)).toThrow(/--cpu must be between 0.1 and 1024 \(got 4096\)/)
    expect(() => checkLimits({...big, memoryMib: 8}, true)).toThrow(/--mem must be between 32 MiB/)
  })

  it('parses --env pairs', () => {
    expect(parseEnv(['A=1', 'B=x=y', 'C='])).toEqual({A: '1', B: 'x=y', C: ''})
    expect(() => parseEnv(['=1'])).toThrow(/NAME=VALUE/)
    expect(() => parseEnv(['1A=1'])).toThrow(/NAME=VALUE/)
  })
})
