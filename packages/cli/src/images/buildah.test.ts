import {existsSync, readdirSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {AgentError} from '../errors.js'
import {Buildah, buildahError} from './buildah.js'
import {imageStore} from './storage.js'
import {tempStore, type TempStore} from './test-store.js'

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

  it('reports a missing buildah binary as unavailable', async () => {
    const b = new Buildah(imageStore(store.dir, store.env), '/nonexistent/buildah')
    await expect(b.images()).rejects.toMatchObject({kind: 'unavailable'})
  })

  it('extracts buildah’s own reason from its output', () => {
    expect(buildahError('time="x" level=warning msg="retrying"\nError: initializing source docker://x: no such host\n')).toBe('initializing source docker://x: no such host')
    expect(buildahError('something\nbroke')).toBe('something | broke')
    expect(new AgentError('image', 'x').exitCode).toBe(7)
  })
})
