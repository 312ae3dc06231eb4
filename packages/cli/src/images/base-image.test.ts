import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {BASE_IMAGE, aptMirror, ensureBaseImage} from './base-image.js'
import {tempStore, type TempStore} from './test-store.js'

describe('Debian base image', () => {
  let store: TempStore
  beforeAll(() => {
    store = tempStore()
  })
  afterAll(async () => {
    await store?.cleanup()
  })

  it('validates AGENT_APT_MIRROR', () => {
    expect(aptMirror({})).toBe('http://deb.debian.org/debian')
    expect(aptMirror({AGENT_APT_MIRROR: 'http://127.0.0.1:3142/debian'})).toBe('http://127.0.0.1:3142/debian')
    expect(() => aptMirror({AGENT_APT_MIRROR: 'http://x/$(touch /tmp/pwned)'})).toThrow(/AGENT_APT_MIRROR/)
    expect(() => aptMirror({AGENT_APT_MIRROR: 'ftp.debian.org'})).toThrow(/AGENT_APT_MIRROR/)
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
