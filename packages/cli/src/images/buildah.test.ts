import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {AgentError} from '../errors.js'
import {Buildah, buildahError} from './buildah.js'
import {imageStore} from './storage.js'

// Unit tests: no buildah runs here. The wrapper against real buildah is tested in
// test/e2e/image-store.test.ts (e2e project).
describe('Buildah', () => {
  const dir = mkdtempSync(join(tmpdir(), 'agentimg-unit-'))
  afterAll(() => rmSync(dir, {recursive: true, force: true}))

  it('reports a missing buildah binary as unavailable', async () => {
    const b = new Buildah(imageStore(dir, {AGENT_STATE_DIR: dir}), '/nonexistent/buildah')
    await expect(b.images()).rejects.toMatchObject({kind: 'unavailable'})
  })

  it('extracts buildah’s own reason from its output', () => {
    expect(buildahError('time="x" level=warning msg="retrying"\nError: initializing source docker://x: no such host\n')).toBe('initializing source docker://x: no such host')
    expect(buildahError('something\nbroke')).toBe('something | broke')
    expect(new AgentError('image', 'x').exitCode).toBe(7)
  })
})
