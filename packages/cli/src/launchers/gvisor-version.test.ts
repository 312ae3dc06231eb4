import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {PLATFORM_FILE, platformFromEnv, recordedPlatform} from './gvisor.js'
import {choosePlatform, gvisorFacts, gvisorFactsLine, gvisorWarning, parseRunscVersion, platformProblem, runscFacts} from './gvisor-version.js'

describe('runsc version', () => {
  it('reads the Debian and the upstream spellings', () => {
    expect(parseRunscVersion('runsc version 0.0~20240729.0\nspec: 1.0.2-dev')).toEqual({raw: 'runsc version 0.0~20240729.0', date: 20240729, label: 'release-20240729.0'})
    expect(parseRunscVersion('runsc version release-20240729.0')?.label).toBe('release-20240729.0')
    expect(parseRunscVersion('runsc version 0.0~20221219.0')?.date).toBe(20221219)
    expect(parseRunscVersion('runsc version release-20250113.1')?.label).toBe('release-20250113.1')
    expect(parseRunscVersion('runsc version VERSION_MISSING')).toBeUndefined()
  })

  it('20240729 (bookworm-backports): statx works, systrap and ptrace, the symlink xattr bug', () => {
    const f = runscFacts('runsc version 0.0~20240729.0')
    expect(f).toMatchObject({supported: true, statxWorks: true, lgetxattrSymlinkBug: true, platforms: ['systrap', 'ptrace'], networkSandbox: false})
    expect(gvisorWarning(f)).toBeUndefined()
    expect(platformProblem(f, 'systrap')).toBeUndefined()
    expect(platformProblem(f, 'ptrace')).toBeUndefined()
  })

  it('20221219 (bookworm): kept working, with a warning about ls/stat; systrap refused with the fix named', () => {
    const f = runscFacts('runsc version 0.0~20221219.0')
    expect(f).toMatchObject({supported: true, statxWorks: false, platforms: ['ptrace']})
    expect(gvisorWarning(f)).toMatch(/ls and stat fail.*bookworm-backports/)
    expect(platformProblem(f, 'ptrace')).toBeUndefined()
    expect(platformProblem(f, 'systrap')).toMatch(/has no systrap platform \(it has: ptrace\).*bookworm-backports.*--gvisor-platform ptrace/)
  })

  it('refuses releases older than the oldest tested one, and unreadable versions', () => {
    expect(runscFacts('runsc version release-20210301.0')).toMatchObject({supported: false, reason: expect.stringMatching(/older than release-20221219.0/)})
    expect(runscFacts('something else')).toMatchObject({supported: false, reason: expect.stringMatching(/cannot read a release date/)})
  })

  it('doctor lines say what the release allows and which platform agent uses', () => {
    expect(gvisorFacts('runsc version 0.0~20240729.0', 'ptrace')[0]).toBe('runsc release-20240729.0: ls/stat/find/du work; platforms systrap, ptrace (agent uses ptrace)')
    expect(gvisorFacts('runsc version 0.0~20221219.0', 'systrap')[0]).toMatch(/^runsc release-20221219.0: ls\/stat FAIL inside VMs.*platforms ptrace \(agent uses ptrace\)$/)
    const line = gvisorFactsLine('runsc version 0.0~20240729.0', 'systrap')
    expect(line.match(/runsc release-20240729.0/g)).toHaveLength(1)
    expect(line).toMatch(/agent uses systrap.*Bad file descriptor.*--network=sandbox refuses/)
  })
})

describe('platform per VM', () => {
  it('default systrap, ptrace on a release without it; an explicit choice is kept (and checked by the launcher)', () => {
    expect(choosePlatform(runscFacts('runsc version 0.0~20240729.0'), undefined)).toBe('systrap')
    expect(choosePlatform(runscFacts('runsc version 0.0~20221219.0'), undefined)).toBe('ptrace')
    expect(choosePlatform(runscFacts('runsc version 0.0~20240729.0'), 'ptrace')).toBe('ptrace')
    expect(choosePlatform(runscFacts('runsc version 0.0~20221219.0'), 'systrap')).toBe('systrap')
  })

  it('AGENT_GVISOR_PLATFORM is checked', () => {
    expect(platformFromEnv({})).toBeUndefined()
    expect(platformFromEnv({AGENT_GVISOR_PLATFORM: 'systrap'})).toBe('systrap')
    expect(() => platformFromEnv({AGENT_GVISOR_PLATFORM: 'kvm'})).toThrow(/unknown gVisor platform "kvm".*ptrace, systrap/)
  })

  it('is read back from the VM dir; a VM made before the file existed ran ptrace', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gvisor-platform-'))
    try {
      expect(recordedPlatform(dir)).toBe('ptrace')
      writeFileSync(join(dir, PLATFORM_FILE), 'systrap\n')
      expect(recordedPlatform(dir)).toBe('systrap')
      writeFileSync(join(dir, PLATFORM_FILE), 'bogus\n')
      expect(recordedPlatform(dir)).toBe('ptrace')
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })
})
