import {chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {AgentError} from '../errors.js'
import {Buildah, buildahError, platformArgs} from './buildah.js'
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

  describe('image platform', () => {
    // A stand-in buildah that records its argv, one word per line (no image is pulled here).
    const recorder = (): {bin: string; argv: () => string[]} => {
      const d = mkdtempSync(join(dir, 'rec-'))
      const bin = join(d, 'buildah')
      writeFileSync(bin, `#!/bin/sh\nprintf '%s\\n' "$@" > ${JSON.stringify(join(d, 'argv'))}\necho cid\n`)
      chmodSync(bin, 0o755)
      return {bin, argv: () => readFileSync(join(d, 'argv'), 'utf8').trimEnd().split('\n')}
    }
    const store = () => ({...imageStore(dir, {AGENT_STATE_DIR: dir}, 'linux'), hostDir: undefined})

    it('macOS: pull and from ask for linux/arm64, as krunvm does', async () => {
      const r = recorder()
      const b = new Buildah(store(), r.bin, {platform: 'darwin'})
      await b.pull('docker.io/library/alpine:3')
      expect(r.argv()).toEqual(['pull', '--signature-policy', join(dir, 'containers', 'policy.json'), '--os', 'linux', '--arch', 'arm64', '--quiet', '--retry', '1', '--retry-delay', '1s', 'docker.io/library/alpine:3'])
      await b.from('agent/python:3', 'w1')
      expect(r.argv()).toEqual(['from', '--signature-policy', join(dir, 'containers', 'policy.json'), '--os', 'linux', '--arch', 'arm64', '--pull-never', '--name', 'w1', 'agent/python:3'])
      await b.fromScratch('w2')
      expect(r.argv()).toEqual(['from', '--os', 'linux', '--arch', 'arm64', '--name', 'w2', 'scratch'])
    })

    it('Linux: the host platform is buildah’s own default, so no flags', async () => {
      const r = recorder()
      await new Buildah(store(), r.bin, {platform: 'linux'}).pull('x')
      expect(r.argv()).not.toContain('--os')
      expect(platformArgs({platform: 'linux'})).toEqual([])
    })

    it('refuses to run buildah on a store agent reported a problem with', async () => {
      const r = recorder()
      const b = new Buildah({...store(), problem: {reason: 'driver = "overlay" on macOS', fix: 'run scripts/macos/setup.sh'}}, r.bin, {platform: 'darwin'})
      await expect(b.pull('x')).rejects.toMatchObject({kind: 'unavailable', message: 'driver = "overlay" on macOS', hint: 'run scripts/macos/setup.sh'})
    })
  })
})
