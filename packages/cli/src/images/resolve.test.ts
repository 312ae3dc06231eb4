import {defineRuntime} from '@agent/runtime-kit'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {AgentError} from '../errors.js'
import {chooseImage, ensureImage, imageEnvVar, localImageName, pullTimeoutMs} from './resolve.js'
import {tempStore, type TempStore} from './test-store.js'

const runtime = (language: string, image = `docker.io/library/${language}:1-slim`) =>
  defineRuntime({language, image, hello: ['true'], version: ['true'], fileRun: {'.x': ['run', '{file}']}})

describe('chooseImage (real buildah, private store)', () => {
  let store: TempStore
  let stateRoot: string
  // A language with a local build in the store, one without.
  const built = runtime('builtlang')
  const missing = runtime('missing-lang')

  beforeAll(async () => {
    store = tempStore()
    stateRoot = mkdtempSync(join(tmpdir(), 'agentimg-state-'))
    await store.tinyImage(localImageName('builtlang'))
  })
  afterAll(async () => {
    await store?.cleanup()
    rmSync(stateRoot, {recursive: true, force: true})
  })

  const choose = (rt: ReturnType<typeof runtime>, o: {flagImage?: string; env?: NodeJS.ProcessEnv} = {}) =>
    chooseImage({language: rt.language, runtime: rt, buildah: store.buildah, stateRoot, env: o.env ?? {}, flagImage: o.flagImage})

  it('falls back to the runtime default image when nothing local or configured exists', async () => {
    const c = await choose(missing)
    expect(c).toMatchObject({image: 'docker.io/library/missing-lang:1-slim', source: 'remote'})
    expect(c.reason).toContain('agent image build missing-lang')
  })

  it('prefers a locally built localhost/agent/<language>:latest over the remote default', async () => {
    const c = await choose(built)
    expect(c).toEqual({
      image: 'localhost/agent/builtlang:latest',
      source: 'local',
      reason: 'localhost/agent/builtlang:latest: built locally by `agent image build builtlang`',
      present: true,
    })
  })

  it('config.json beats the local build; env beats config; --image beats env', async () => {
    writeFileSync(join(stateRoot, 'config.json'), JSON.stringify({images: {builtlang: 'example.org/cfg/builtlang:2'}}))
    try {
      expect(await choose(built)).toMatchObject({image: 'example.org/cfg/builtlang:2', source: 'config'})
      const env = {AGENT_IMAGE_BUILTLANG: 'example.org/env/builtlang:3'}
      expect(await choose(built, {env})).toMatchObject({image: 'example.org/env/builtlang:3', source: 'env', reason: expect.stringContaining('AGENT_IMAGE_BUILTLANG')})
      expect(await choose(built, {env, flagImage: 'example.org/flag/x:4'})).toMatchObject({image: 'example.org/flag/x:4', source: 'flag'})
    } finally {
      rmSync(join(stateRoot, 'config.json'))
    }
  })

  it("names the env override AGENT_IMAGE_<LANGUAGE> with '-' as '_'", async () => {
    expect(imageEnvVar('missing-lang')).toBe('AGENT_IMAGE_MISSING_LANG')
    expect(await choose(missing, {env: {AGENT_IMAGE_MISSING_LANG: 'localhost/other:1'}})).toMatchObject({image: 'localhost/other:1', source: 'env'})
  })

  it('refuses invalid references from every source as usage errors', async () => {
    for (const bad of ['a b', '../x', '$(touch /tmp/pwned)', 'UPPER/case', '']) {
      await expect(choose(built, {flagImage: bad})).rejects.toMatchObject({kind: 'usage', exitCode: 2})
    }
    await expect(choose(built, {env: {AGENT_IMAGE_BUILTLANG: 'a b'}})).rejects.toMatchObject({kind: 'usage'})
    writeFileSync(join(stateRoot, 'config.json'), JSON.stringify({images: {builtlang: '../x'}}))
    await expect(choose(built)).rejects.toMatchObject({kind: 'usage'})
    writeFileSync(join(stateRoot, 'config.json'), '{not json')
    await expect(choose(built)).rejects.toMatchObject({kind: 'usage', message: expect.stringContaining('config.json')})
    rmSync(join(stateRoot, 'config.json'))
  })

  it('ensureImage does nothing for an image already in the store', async () => {
    await ensureImage({image: localImageName('builtlang'), source: 'local', reason: ''}, store.buildah, 'builtlang')
  })

  it('ensureImage turns an unreachable registry into an image error that suggests the offline build', async () => {
    const err = await ensureImage({image: 'localhost:1/nope:latest', source: 'remote', reason: ''}, store.buildah, 'python', 30_000).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(AgentError)
    expect(err).toMatchObject({kind: 'image', exitCode: 7, hint: 'build it offline with `agent image build python`'})
    expect((err as Error).message).toMatch(/^cannot pull localhost:1\/nope:latest: /)
    expect(await store.buildah.images()).toHaveLength(1)
  })
})

describe('pullTimeoutMs', () => {
  it('reads AGENT_PULL_TIMEOUT in seconds, default 60', () => {
    expect(pullTimeoutMs({})).toBe(60_000)
    expect(pullTimeoutMs({AGENT_PULL_TIMEOUT: '5'})).toBe(5_000)
    expect(() => pullTimeoutMs({AGENT_PULL_TIMEOUT: 'soon'})).toThrow(/AGENT_PULL_TIMEOUT/)
    expect(() => pullTimeoutMs({AGENT_PULL_TIMEOUT: '0'})).toThrow(AgentError)
  })
})
