import {describe, expect, it} from 'vitest'
import {aptMirror} from './base-image.js'

// A failed base build against real buildah: test/e2e/image-store.test.ts (e2e project).
describe('Debian base image', () => {
  it('validates AGENT_APT_MIRROR', () => {
    expect(aptMirror({})).toBe('http://deb.debian.org/debian')
    expect(aptMirror({AGENT_APT_MIRROR: 'http://127.0.0.1:3142/debian'})).toBe('http://127.0.0.1:3142/debian')
    expect(() => aptMirror({AGENT_APT_MIRROR: 'http://x/$(touch /tmp/pwned)'})).toThrow(/AGENT_APT_MIRROR/)
    expect(() => aptMirror({AGENT_APT_MIRROR: 'ftp.debian.org'})).toThrow(/AGENT_APT_MIRROR/)
  })
})
