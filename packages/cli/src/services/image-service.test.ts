import {defineRuntime} from '@agent/runtime-kit'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {Buildah} from '../images/buildah.js'
import {imageStore} from '../images/storage.js'
import {normalizeRef, pullImage, runtimeForImage} from './image-service.js'

// Builds and pulls against real buildah: test/e2e/image-store.test.ts (e2e project).
describe('image service without buildah', () => {
  const dir = mkdtempSync(join(tmpdir(), 'agentimg-unit-'))
  afterAll(() => rmSync(dir, {recursive: true, force: true}))

  it('pull refuses a bad reference before buildah runs', async () => {
    const never = new Buildah(imageStore(dir, {AGENT_STATE_DIR: dir}), '/nonexistent/buildah-must-not-run')
    const runtimes = async () => {
      throw new Error('plugins must not be loaded for a bad reference')
    }
    for (const ref of ['a b', '../x', '$(touch /tmp/pwned)']) await expect(pullImage({buildah: never, runtimes}, ref)).rejects.toMatchObject({kind: 'usage', exitCode: 2})
  })
})

describe('image references', () => {
  const rts = ['python:docker.io/library/python:3.11-slim', 'golang:docker.io/library/golang:1.22-bookworm'].map((s) => {
    const [language, image] = [s.slice(0, s.indexOf(':')), s.slice(s.indexOf(':') + 1)]
    return defineRuntime({language, image, hello: ['x'], version: ['x'], fileRun: {'.x': ['x', '{file}']}})
  })
  it('normalizes implicit registry, library/ and :latest', () => {
    expect(normalizeRef('python:3.11-slim')).toBe('docker.io/library/python:3.11-slim')
    expect(normalizeRef('me/app')).toBe('docker.io/me/app:latest')
    expect(normalizeRef('localhost:5000/x')).toBe('localhost:5000/x:latest')
    expect(normalizeRef('localhost/agent/python:latest')).toBe('localhost/agent/python:latest')
  })
  it('finds the runtime an image belongs to', () => {
    expect(runtimeForImage('python:3.11-slim', rts)?.language).toBe('python')
    expect(runtimeForImage('docker.io/library/golang:1.22-bookworm', rts)?.language).toBe('golang')
    expect(runtimeForImage('localhost/agent/golang', rts)?.language).toBe('golang')
    expect(runtimeForImage('python:3.12', rts)).toBeUndefined()
  })
})
