import {existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {delimiter, dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ensureStateDir, StatePaths} from '../config/state-dir.js'
import {AgentError} from '../errors.js'
import type {Availability} from '../launchers/launcher.js'
import {KrunvmLauncher} from '../launchers/krunvm.js'
import type {LauncherName} from '../state/vm-record.js'
import {checkCgroups, doctorFailure, findBinary, hostLaunchers, renderDoctor, runDoctor} from './doctor.js'

const STANDIN_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../test/fixtures/krunvm-standin')

let root: string
let paths: StatePaths
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'agent-doctor-test-'))
  paths = ensureStateDir(join(root, 'state'))
})
afterAll(() => rmSync(root, {recursive: true, force: true}))

/** A launcher that only answers available(): enough for doctor. */
function fake(name: LauncherName, a: Availability) {
  return {name, available: async () => a}
}
const usable = (v: string): Availability => ({ok: true, version: v})
const broken = (reason: string, fix: string): Availability => ({ok: false, reason, fix})

describe('doctor service', () => {
  it('picks krunvm first when it is usable (stand-in plus the test-only hypervisor switch)', async () => {
    const env = {...process.env, PATH: `${STANDIN_DIR}${delimiter}${process.env.PATH}`, AGENT_KRUNVM_ASSUME_HYPERVISOR: '1', BUILDAH_ISOLATION: 'chroot'}
    const krunvm = new KrunvmLauncher({env})
    const r = await runDoctor({paths, env, launchers: [fake('runc', usable('runc 1')), fake('gvisor', usable('runsc 1')), krunvm]})
    expect(r.ok).toBe(true)
    expect(r.defaultLauncher).toBe('krunvm')
    expect(r.defaultReason).toMatch(/^krunvm is usable/)
    expect(r.launchers.map((l) => l.name)).toEqual(['krunvm', 'gvisor', 'runc'])
    expect(r.launchers[0]).toMatchObject({ok: true, version: 'krunvm 0.2.6'})
    const bin = r.checks.find((c) => c.id === 'krunvm')!
    expect(bin).toMatchObject({ok: true})
    expect(bin.detail).toMatch(/^krunvm 0\.2\.6 \(.*krunvm-standin\/krunvm\)$/)
  })

  it('falls back to gvisor when krunvm has no KVM, and says why', async () => {
    const env = {...process.env, PATH: `${STANDIN_DIR}${delimiter}${process.env.PATH}`, BUILDAH_ISOLATION: 'chroot'}
    delete env.AGENT_KRUNVM_ASSUME_HYPERVISOR
    const krunvm = new KrunvmLauncher({env, platform: 'linux'})
    const noKvm = join(root, 'no-kvm')
    const r = await runDoctor({paths, env, platform: 'linux', roots: {kvm: noKvm}, launchers: [krunvm, fake('gvisor', usable('runsc 1')), fake('runc', usable('runc 1'))]})
    if (existsSync('/dev/kvm')) return // the launcher itself looks at the real /dev/kvm
    expect(r.defaultLauncher).toBe('gvisor')
    expect(r.defaultReason).toMatch(/^krunvm is not usable \(\/dev\/kvm does not exist.*\); gvisor is usable/)
    const kv = r.launchers.find((l) => l.name === 'krunvm')!
    expect(kv).toMatchObject({ok: false, version: 'krunvm 0.2.6'})
    expect(kv.fix).toMatch(/enable KVM/)
    const hv = r.checks.find((c) => c.id === 'hypervisor')!
    expect(hv).toMatchObject({ok: false, neededBy: ['krunvm']})
    expect(hv.detail).toBe(`${noKvm} does not exist (no KVM)`)
    expect(hv.fix).toMatch(/enable KVM/)
    const text = renderDoctor(r).join('\n')
    expect(text).toMatch(/NO  krunvm\s+\/dev\/kvm does not exist/)
    expect(text).toMatch(/Default launcher: gvisor/)
  })

  it('reports each missing binary with a fix line', async () => {
    const empty = join(root, 'empty-bin')
    mkdirSync(empty, {recursive: true})
    const env = {PATH: empty}
    const r = await runDoctor({paths, env, platform: 'linux', launchers: [fake('gvisor', usable('runsc 1'))]})
    for (const id of ['runsc', 'runc', 'krunvm', 'buildah', 'slirp4netns']) {
      const c = r.checks.find((x) => x.id === id)!
      expect(c, id).toMatchObject({ok: false, detail: 'not found on PATH'})
      expect(c.fix, id).toMatch(/install/)
    }
    expect(r.checks.find((c) => c.id === 'image-storage')).toMatchObject({ok: false})
    const explicit = await runDoctor({paths, env: {PATH: empty, AGENT_RUNSC: '/nonexistent/runsc'}, platform: 'linux', launchers: []})
    expect(explicit.checks.find((c) => c.id === 'runsc')!.detail).toBe('AGENT_RUNSC=/nonexistent/runsc is not an executable file')
  })

  it('checks the state dir by writing to it', async () => {
    const file = join(root, 'a-file')
    writeFileSync(file, '')
    const r = await runDoctor({paths: new StatePaths(join(file, 'state')), env: {PATH: ''}, platform: 'linux', launchers: []})
    const sd = r.checks.find((c) => c.id === 'state-dir')!
    expect(sd.ok).toBe(false)
    expect(sd.fix).toMatch(/AGENT_STATE_DIR/)
    const good = await runDoctor({paths, env: {PATH: ''}, platform: 'linux', launchers: []})
    expect(good.checks.find((c) => c.id === 'state-dir')).toMatchObject({ok: true, detail: `${paths.root} is writable`})
  })

  it('reads cgroup v2 and v1 layouts and names missing controllers', () => {
    const v2 = join(root, 'cg2')
    mkdirSync(v2, {recursive: true})
    writeFileSync(join(v2, 'cgroup.controllers'), 'cpuset cpu io memory hugetlb pids rdma\n')
    expect(checkCgroups({cgroupRoot: v2, procCgroups: '/nonexistent'})).toMatchObject({ok: true, detail: 'cgroup v2 (memory, pids present)'})
    writeFileSync(join(v2, 'cgroup.controllers'), 'cpu io memory\n')
    const bad = checkCgroups({cgroupRoot: v2, procCgroups: '/nonexistent'})
    expect(bad).toMatchObject({ok: false, detail: 'cgroup v2, missing controllers: pids (have: cpu io memory)'})
    expect(bad.fix).toMatch(/pids/)

    const v1 = join(root, 'cg1')
    for (const d of ['memory', 'pids', 'unified']) mkdirSync(join(v1, d), {recursive: true})
    const proc = join(root, 'proc-cgroups')
    writeFileSync(proc, '#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\nmemory\t4\t24\t1\npids\t8\t1\t1\n')
    expect(checkCgroups({cgroupRoot: v1, procCgroups: proc})).toMatchObject({ok: true, detail: 'cgroup v1 hybrid (memory, pids mounted)'})
    writeFileSync(proc, '#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t0\t1\t0\npids\t8\t1\t1\n')
    expect(checkCgroups({cgroupRoot: v1, procCgroups: proc})).toMatchObject({ok: false, detail: 'cgroup v1 hybrid, missing or unmounted controllers: memory'})
  })

  it('fails with an unavailable error (exit 5) when no launcher is usable', async () => {
    const r = await runDoctor({
      paths, env: {PATH: ''}, platform: 'linux',
      launchers: [fake('krunvm', broken('no kvm', 'enable KVM')), fake('gvisor', broken('runsc missing', 'install runsc')), fake('runc', broken('runc missing', 'install runc'))],
    })
    expect(r.ok).toBe(false)
    expect(r.defaultLauncher).toBeNull()
    const e = doctorFailure(r)
    expect(e).toBeInstanceOf(AgentError)
    expect(e.kind).toBe('unavailable')
    expect(e.exitCode).toBe(5)
    expect(e.message).toBe('no launcher is usable on this host: krunvm: no kvm; gvisor: runsc missing; runc: runc missing')
    expect(e.hint).toBe('krunvm: enable KVM; gvisor: install runsc; runc: install runc')
  })

  it('on this host, with the real launchers: krunvm is unavailable (no KVM) and gvisor is the default', async () => {
    const launchers = await hostLaunchers()
    expect(launchers.map((l) => l.name)).toEqual(['krunvm', 'gvisor', 'runc'])
    const r = await runDoctor({paths, launchers})
    const kv = r.launchers.find((l) => l.name === 'krunvm')!
    if (!existsSync('/dev/kvm') && process.env.AGENT_KRUNVM_ASSUME_HYPERVISOR !== '1') expect(kv.ok).toBe(false)
    const gv = r.launchers.find((l) => l.name === 'gvisor')!
    // This CI host: root, runsc installed, no KVM.
    if (!existsSync('/dev/kvm') && findBinary('runsc', process.env) && process.getuid?.() === 0) {
      expect(kv).toMatchObject({ok: false, reason: expect.stringMatching(/\/dev\/kvm does not exist/)})
      expect(gv.ok).toBe(true)
      expect(r.defaultLauncher).toBe('gvisor')
      expect(r.defaultReason).toMatch(/^krunvm is not usable .*; gvisor is usable/)
    }
    expect(r.checks.map((c) => c.id)).toEqual(['state-dir', 'runsc', 'runc', 'krunvm', 'buildah', 'slirp4netns', 'hypervisor', 'cgroups', 'image-storage'])
  })
})
