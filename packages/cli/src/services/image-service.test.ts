import {defineRuntime} from '@agent/runtime-kit'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BASE_IMAGE, ensureBaseImage} from '../images/base-image.js'
import {Buildah} from '../images/buildah.js'
import {imageStore} from '../images/storage.js'
import {tempStore, type TempStore} from '../images/test-store.js'
import {buildLanguageImage, listImages, normalizeRef, pullImage, recipeBases, removeImage, runtimeForImage} from './image-service.js'

const TEST_IMAGE_STORE = process.env.AGENT_TEST_IMAGE_STORE ?? '/var/tmp/agent-test-images'

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
    expect(recipeBases(recipe(dir, 'FROM --platform=linux/amd64 localhost/agent/debian:bookworm AS b\nFROM b\n'))).toEqual([BASE_IMAGE, 'b'])
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
      const rows = await listImages(store.buildah)
      expect(rows.find((r) => r.name === 'localhost/agent/tiny:latest')).toMatchObject({repository: 'localhost/agent/tiny', tag: 'latest', id: first.id.slice(0, 12)})
      await removeImage(store.buildah, 'localhost/agent/tiny:latest')
      await expect(removeImage(store.buildah, 'localhost/agent/tiny:latest')).rejects.toMatchObject({exitCode: 3})
    } finally {
      rmSync(ok, {recursive: true, force: true})
    }
  })

  it('pull: a bad reference is refused before buildah runs; an unreachable one names the image and the offline build', async () => {
    const never = new Buildah(store.buildah.store, '/nonexistent/buildah-must-not-run')
    for (const ref of ['a b', '../x', '$(touch /tmp/pwned)']) await expect(pullImage({buildah: never, ref})).rejects.toMatchObject({kind: 'usage', exitCode: 2})
    const before = await store.buildah.images()
    const python = defineRuntime({language: 'python', image: 'docker.io/library/python:3.11-slim', hello: ['x'], version: ['x'], fileRun: {'.py': ['p', '{file}']}})
    const err = await pullImage({buildah: store.buildah, ref: 'localhost:1/python:3.11-slim', runtimes: [python], timeoutMs: 30_000}).catch((e: unknown) => e)
    expect(err).toMatchObject({kind: 'image', exitCode: 7, message: expect.stringMatching(/^cannot pull localhost:1\/python:3.11-slim: /)})
    expect((err as {hint: string}).hint).toContain('agent image build <language>')
    expect(await store.buildah.images()).toEqual(before)
    expect(await store.buildah.containers()).toEqual([])
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
