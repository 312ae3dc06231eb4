import {describe, expect, it} from 'vitest'
import {krunvmFeatures, parseKrunvmVersion} from './version.js'

describe('krunvm versions', () => {
  it('reads `krunvm --version` and nothing else', () => {
    expect(parseKrunvmVersion('krunvm 0.2.6')).toEqual([0, 2, 6])
    expect(parseKrunvmVersion('krunvm 0.2.7\n')).toEqual([0, 2, 7])
    for (const bad of [undefined, '', 'krunvm', 'krunvm 0.2', 'krunvm 0.2.6-rc1', 'buildah 0.2.6', 'krunvm 0.2.6 extra']) expect(parseKrunvmVersion(bad), String(bad)).toBeUndefined()
  })

  it('0.2.6 and 0.2.7: known, network always on, macOS volumes through virtio-fs', () => {
    for (const v of ['0.2.6', '0.2.7']) {
      const f = krunvmFeatures(`krunvm ${v}`, 'darwin')
      expect(f).toMatchObject({version: v, known: true, networkOff: false, macVolumes: true})
      expect(f.summary).toBe(`krunvm ${v}: network always on (no off switch: VMs need --network allow_all); one command per boot, no terminal; guest volumes through virtio-fs (AGENT_ENABLE_GUEST_VOLUMES=1)`)
    }
    expect(krunvmFeatures('krunvm 0.2.6', 'linux').summary).toBe('krunvm 0.2.6: network always on (no off switch: VMs need --network allow_all); one command per boot, no terminal')
  })

  it('says so for versions agent does not know, or cannot read', () => {
    const old = krunvmFeatures('krunvm 0.2.3', 'darwin')
    expect(old).toMatchObject({known: false, macVolumes: false})
    expect(old.summary).toMatch(/no guest volumes on macOS \(krunvm 0\.2\.5 or newer mounts them\); agent knows 0\.2\.6 and 0\.2\.7 and uses 0\.2\.6's command lines$/)
    expect(krunvmFeatures('krunvm 0.3.0', 'linux')).toMatchObject({version: '0.3.0', known: false, networkOff: false})
    expect(krunvmFeatures('something else', 'linux')).toMatchObject({version: undefined, known: false, summary: expect.stringMatching(/cannot read krunvm's version \("something else"\)/)})
  })
})
