// Image storage with real buildah in private, throw-away stores (test/helpers/test-store.ts) and
// in the shared test image store: the buildah wrapper, the Debian base build, image choice and the
// image service. Needs buildah and root, so it belongs to the e2e project (moved out of
// packages/cli/src, where only unit tests live).
import {defineRuntime} from '@agent/runtime-kit'
import {existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {AgentError} from '../../packages/cli/src/errors.js'
import {BASE_IMAGE, ensureBaseImage} from '../../packages/cli/src/images/base-image.js'
import {Buildah} from '../../packages/cli/src/images/buildah.js'
import {chooseImage, ensureImage, imageEnvVar, localImageName} from '../../packages/cli/src/images/resolve.js'
import {imageStore} from '../../packages/cli/src/images/storage.js'
import type {RuntimeRegistry} from '../../packages/cli/src/runtimes/registry.js'
import {buildLanguageImage, listImages, pullImage, recipeBases, removeImage} from '../../packages/cli/src/services/image-service.js'
import {TEST_IMAGE_STORE} from '../helpers/agent.js'
import {tempStore, type TempStore} from '../helpers/test-store.js'

/** path -> mtime and size of every entry under dir (or undefined when dir does not exist). */
function snapshot(dir: string): Map<string, string> | undefined {
  if (!existsSync(dir)) return undefined
  const out = new Map<string, string>()
  const walk = (d: string) => {
    for (const e of readdirSync(d, {withFileTypes: true})) {
      const p = join(d, e.name)
      const st = statSync(p, {throwIfNoEntry: false})
      out.set(p, st ? `${st.mtimeMs}:${st.size}` : 'gone')
      if (e.isDirectory()) walk(p)
    }
  }
  out.set(dir, String(statSync(dir).mtimeMs))
  walk(dir)
  return out
}

describe('Buildah (real buildah, private store)', () => {
  let store: TempStore
  beforeAll(() => {
    store = tempStore()
  })
  afterAll(async () => {
    await store?.cleanup()
  })

  it('commits, lists, tags and removes images in the isolated store without writing /var/lib/containers', async () => {
    const before = snapshot('/var/lib/containers')
    await store.tinyImage('localhost/agentimg/tiny:1')
    await store.buildah.tag('localhost/agentimg/tiny:1', 'localhost/agentimg/tiny:2')
    const imgs = await store.buildah.images()
    expect(imgs).toHaveLength(1)
    expect(imgs[0].names.sort()).toEqual(['localhost/agentimg/tiny:1', 'localhost/agentimg/tiny:2'])
    expect(imgs[0].id).toMatch(/^[0-9a-f]{12}$/)
    expect(imgs[0].created).toMatch(/^\d{4}-\d\d-\d\dT/)
    expect(await store.buildah.imageId('localhost/agentimg/tiny:2')).toMatch(/^[0-9a-f]{64}$/)
    await store.buildah.removeImage('localhost/agentimg/tiny:2')
    expect(await store.buildah.imageExists('localhost/agentimg/tiny:2')).toBe(false)
    expect(await store.buildah.imageExists('localhost/agentimg/tiny:1')).toBe(true)
    expect(snapshot('/var/lib/containers')).toEqual(before)
    // containers/image's blob-info cache went to the store's stand-in dir instead.
    if (before) expect(existsSync(join(store.buildah.store.hostDir!, 'cache'))).toBe(true)
  })

  it('removing a missing image is not_found; a missing container is fine', async () => {
    await expect(store.buildah.removeImage('localhost/agentimg/none:1')).rejects.toMatchObject({kind: 'not_found', exitCode: 3})
    await store.buildah.rm('agentimg-no-such-container')
  })

})

describe('Debian base image build (real buildah, private store)', () => {
  let store: TempStore
  beforeAll(() => {
    store = tempStore()
  })
  afterAll(async () => {
    await store?.cleanup()
  })

  it('a failed base build (unreachable mirror) tags nothing and leaves no working container', async () => {
    const err = await ensureBaseImage(store.buildah, {env: {...process.env, AGENT_APT_MIRROR: 'http://127.0.0.1:1/debian'}}).catch((e: unknown) => e)
    expect(err).toMatchObject({kind: 'image', exitCode: 7})
    expect((err as Error).message).toContain(BASE_IMAGE)
    expect((err as {hint?: string}).hint).toContain('AGENT_APT_MIRROR')
    expect(await store.buildah.images()).toEqual([])
    expect(await store.buildah.containers()).toEqual([])
  })
})

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

function recipe(dir: string, text: string): string {
  const file = join(dir, 'Containerfile')
  writeFileSync(file, text)
  return file
}

const fakeRuntime = (language: string, recipeFile: string) =>
  defineRuntime({language, image: `example.org/${language}:1`, recipe: recipeFile, hello: ['true'], version: ['true'], fileRun: {'.x': ['x', '{file}']}})

describe('image service (real buildah)', () => {
  let store: TempStore
  let dir: string
  beforeAll(() => {
    store = tempStore()
    dir = mkdtempSync(join(tmpdir(), 'agentimg-recipe-'))
  })
  afterAll(async () => {
    await store?.cleanup()
    rmSync(dir, {recursive: true, force: true})
  })

  it('a language build whose RUN fails tags nothing and leaves no working container', async () => {
    const rt = fakeRuntime('failing', recipe(dir, 'FROM scratch\nLABEL step=one\nRUN /bin/does-not-exist\n'))
    expect(recipeBases(rt.recipe!)).toEqual(['scratch'])
    expect(recipeBases(recipe(dir, 'FROM --platform=linux/amd64 localhost/agent/debian:bookworm AS b\nFROM b\n'))).toEqual(['localhost/agent/debian:bookworm', 'b'])
    recipe(dir, 'FROM scratch\nLABEL step=one\nRUN /bin/does-not-exist\n')
    const err = await buildLanguageImage({buildah: store.buildah, runtime: rt}).catch((e: unknown) => e)
    expect(err).toMatchObject({kind: 'image', exitCode: 7, message: expect.stringContaining('building localhost/agent/failing:latest failed')})
    expect(await store.buildah.imageExists('localhost/agent/failing:latest')).toBe(false)
    expect((await store.buildah.images()).filter((i) => i.names.length > 0)).toEqual([])
    expect(await store.buildah.containers()).toEqual([])
  })

  it('a recipe FROM the Debian base whose RUN fails leaves nothing tagged or running in the shared store', async () => {
    const shared = new Buildah(imageStore('/nonexistent', {AGENT_IMAGE_STORE: TEST_IMAGE_STORE}))
    // The base is normally there already (scripts/build-images.sh); build it when it is not.
    await ensureBaseImage(shared)
    const lang = `failing-${process.pid}`
    // FROM an extra name of the base, so that buildah's working container (named after the FROM
    // image) can be told apart from those of builds running concurrently in the shared store.
    const alias = `localhost/agentimg-failbase-${process.pid}:latest`
    await shared.tag(BASE_IMAGE, alias)
    try {
      const rt = fakeRuntime(lang, recipe(dir, `FROM ${alias}\nRUN echo about to fail && exit 3\n`))
      const mine = async () => (await shared.containers()).filter((c) => c.name.startsWith(`agentimg-failbase-${process.pid}`))
      const err = await buildLanguageImage({buildah: shared, runtime: rt}).catch((e: unknown) => e)
      expect(err).toMatchObject({kind: 'image', message: expect.stringContaining(`localhost/agent/${lang}:latest`)})
      expect(await shared.imageExists(`localhost/agent/${lang}:latest`)).toBe(false)
      expect(await mine()).toEqual([])
    } finally {
      await shared.removeImage(alias)
    }
  })

  it('builds a recipe that does not need the base without building it, then reports a rebuild as cached', async () => {
    const ok = mkdtempSync(join(tmpdir(), 'agentimg-recipe-ok-'))
    try {
      const rt = fakeRuntime('tiny', recipe(ok, 'FROM scratch\nLABEL agent.test=tiny\nCMD ["/x"]\n'))
      const first = await buildLanguageImage({buildah: store.buildah, runtime: rt})
      expect(first).toMatchObject({language: 'tiny', image: 'localhost/agent/tiny:latest', base: BASE_IMAGE, built: true, baseBuilt: false})
      expect(await store.buildah.imageExists(BASE_IMAGE)).toBe(false)
      const second = await buildLanguageImage({buildah: store.buildah, runtime: rt})
      expect(second).toMatchObject({built: false, id: first.id})
      const rows = await listImages(store)
      expect(rows.find((r) => r.name === 'localhost/agent/tiny:latest')).toMatchObject({repository: 'localhost/agent/tiny', tag: 'latest', id: first.id.slice(0, 12)})
      await removeImage(store, 'localhost/agent/tiny:latest')
      await expect(removeImage(store, 'localhost/agent/tiny:latest')).rejects.toMatchObject({exitCode: 3})
    } finally {
      rmSync(ok, {recursive: true, force: true})
    }
  })

  it('pull: a bad reference is refused before buildah runs; an unreachable one names the image and the offline build', async () => {
    const never = new Buildah(store.buildah.store, '/nonexistent/buildah-must-not-run')
    const noPlugins = async () => {
      throw new Error('plugins must not be loaded for a bad reference')
    }
    for (const ref of ['a b', '../x', '$(touch /tmp/pwned)']) await expect(pullImage({buildah: never, runtimes: noPlugins}, ref)).rejects.toMatchObject({kind: 'usage', exitCode: 2})
    const before = await store.buildah.images()
    const python = defineRuntime({language: 'python', image: 'docker.io/library/python:3.11-slim', hello: ['x'], version: ['x'], fileRun: {'.py': ['p', '{file}']}})
    const runtimes = async () => ({runtimes: [{runtime: python}]}) as unknown as RuntimeRegistry
    const err = await pullImage({buildah: store.buildah, runtimes}, 'localhost:1/python:3.11-slim', {timeoutMs: 30_000}).catch((e: unknown) => e)
    expect(err).toMatchObject({kind: 'image', exitCode: 7, message: expect.stringMatching(/^cannot pull localhost:1\/python:3.11-slim: /)})
    expect((err as {hint: string}).hint).toContain('agent image build <language>')
    expect(await store.buildah.images()).toEqual(before)
    expect(await store.buildah.containers()).toEqual([])
  })
})
