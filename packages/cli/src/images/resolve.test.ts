import {describe, expect, it} from 'vitest'
import {AgentError} from '../errors.js'
import {pullTimeoutMs} from './resolve.js'

// chooseImage and ensureImage against real buildah: test/e2e/image-store.test.ts (e2e project).
describe('pullTimeoutMs', () => {
  it('reads AGENT_PULL_TIMEOUT in seconds, default 60', () => {
    expect(pullTimeoutMs({})).toBe(60_000)
    expect(pullTimeoutMs({AGENT_PULL_TIMEOUT: '5'})).toBe(5_000)
    expect(() => pullTimeoutMs({AGENT_PULL_TIMEOUT: 'soon'})).toThrow(/AGENT_PULL_TIMEOUT/)
    expect(() => pullTimeoutMs({AGENT_PULL_TIMEOUT: '0'})).toThrow(AgentError)
  })
})
