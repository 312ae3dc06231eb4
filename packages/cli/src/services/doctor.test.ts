import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {delimiter, dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ensureStateDir, StatePaths} from '../config/state-dir.js'
import {AgentError} from '../errors.js'
import {GvisorLauncher} from '../launchers/gvisor.js'
import {checkCgroups} from '../launchers/host-checks.js'
import {KrunvmLauncher} from '../launchers/krunvm/launcher.js'
import type {Availability} from '../launchers/launcher.js'
import {RuncLauncher} from '../launchers/runc.js'
import {allLaunchers} from '../launchers/select.js'
import type {LauncherName} from '../state/vm-record.js'
import {doctorFailure, renderDoctor, runDoctor, type DoctorLauncher} from './doctor.js'

const FIXTURES = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../test/fixtures')
const STANDIN_DIR = join(FIXTURES, 'krunvm-standin')
/** krunvm counts as usable only with buildah on PATH: a placeholder, so these tests need no real buildah. */
const BUILDAH_PLACEHOLDER_DIR = join(FIXTURES, 'buildah-placeholder')

let root: string
let paths: StatePaths
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'agent-doctor-test-'))
  paths = ensureStateDir(join(root, 'state'))
})
afterAll(() => rmSync(root, {recursive: true, force: true}))

/** A launcher that answers available() and has no checks of its own: enough for doctor. */
function fake(name: LauncherName, a: Availability): DoctorLauncher {
  return {name, summary: `${name} summary`, available: async () => a, checks: async () => []}
}
const usable = (v: string): Availability => ({ok: true, version: v})
const broken = (reason: string, fix: string): Availability => ({ok: false, reason, fix})

describe('doctor service', () => {
  it('picks krunvm first when it is usable (stand-in plus the test-only hypervisor switch)', async () => {
    const env = {...process.env, PATH: [STANDIN_DIR, BUILDAH_PLACEHOLDER_DIR, process.env.PATH].join(delimiter), AGENT_KRUNVM_ASSUME_HYPERVISOR: '1', BUILDAH_ISOLATION: 'chroot'}
    const krunvm = new KrunvmLauncher({env})
    const r = await runDoctor({paths}, {env, launchers: [fake('runc', usable('runc 1')), fake('gvisor', usable('runsc 1')), krunvm]})
    expect(r.ok).toBe(true)
    expect(r.defaultLauncher).toBe('krunvm')
    expect(r.defaultReason).toBe(`krunvm is usable: ${krunvm.summary}`)
    expect(r.launchers.map((l) => l.name)).toEqual(['krunvm', 'gvisor', 'runc'])
    expect(r.launchers[0]).toMatchObject({ok: true, version: 'krunvm 0.2.6'})
    const bin = r.checks.find((c) => c.id === 'krunvm')!
    expect(bin).toMatchObject({ok: true, neededBy: ['krunvm']})
    expect(bin.detail).toMatch(/^krunvm 0\.2\.6 \(.*krunvm-standin\/krunvm\)$/)
  })

  it('falls back to gvisor when krunvm is not usable, and says why; the hypervisor check is krunvm\'s own', async () => {
    const env = {...process.env, PATH: [STANDIN_DIR, BUILDAH_PLACEHOLDER_DIR, process.env.PATH].join(delimiter)}
    delete env.AGENT_KRUNVM_ASSUME_HYPERVISOR
    const noKvm = join(root, 'no-kvm')
    // Availability is given as krunvm reports it without KVM (the launcher itself reads the real
    // /dev/kvm; krunvm's own tests cover it); its checks are the real ones, against a fake root.
    const real = new KrunvmLauncher({env, platform: 'linux'})
    const krunvm: DoctorLauncher = {...fake('krunvm', {ok: false, version: 'krunvm 0.2.6', reason: `${noKvm} does not exist (no KVM)`, fix: 'enable KVM'}), checks: (h) => real.checks(h)}
    const r = await runDoctor({paths}, {env, platform: 'linux', roots: {kvm: noKvm}, launchers: [krunvm, fake('gvisor', usable('runsc 1')), fake('runc', usable('runc 1'))]})
    expect(r.defaultLauncher).toBe('gvisor')
    expect(r.defaultReason).toBe(`krunvm is not usable (${noKvm} does not exist (no KVM)); gvisor is usable: gvisor summary`)
    const hv = r.checks.find((c) => c.id === 'hypervisor')!
    expect(hv).toMatchObject({ok: false, neededBy: ['krunvm'], detail: `${noKvm} does not exist (no KVM)`})
    expect(hv.fix).toMatch(/enable KVM/)
    const text = renderDoctor(r).join('\n')
    expect(text).toMatch(/NO  krunvm\s+.*does not exist/)
    expect(text).toMatch(/Default launcher: gvisor/)
  })

  it('reports each missing binary with a fix line, asked of the real launchers', async () => {
    const empty = join(root, 'empty-bin')
    mkdirSync(empty, {recursive: true})
    const env = {PATH: empty}
    const launchers = [new KrunvmLauncher({env, platform: 'linux'}), new GvisorLauncher(), new RuncLauncher()]
    const r = await runDoctor({paths}, {env, platform: 'linux', launchers})
    for (const id of ['runsc', 'runc', 'krunvm', 'buildah', 'slirp4netns', 'nft', 'dnsmasq']) {
      const c = r.checks.find((x) => x.id === id)!
      expect(c, id).toMatchObject({ok: false, detail: 'not found on PATH'})
      expect(c.fix, id).toMatch(/install/)
    }
    // slirp4netns and cgroups are needed by both OCI launchers: one row naming both.
    expect(r.checks.filter((c) => c.id === 'slirp4netns')).toHaveLength(1)
    expect(r.checks.find((c) => c.id === 'slirp4netns')!.neededBy).toEqual(['gvisor', 'runc'])
    expect(r.checks.find((c) => c.id === 'image-storage')).toMatchObject({ok: false})
    const explicit = await runDoctor({paths}, {env: {PATH: empty, AGENT_RUNSC: '/nonexistent/runsc'}, platform: 'linux', launchers: [new GvisorLauncher()]})
    expect(explicit.checks.find((c) => c.id === 'runsc')!.detail).toBe('AGENT_RUNSC=/nonexistent/runsc is not an executable file')
  })

  it('checks the state dir by writing to it', async () => {
    const file = join(root, 'a-file')
    writeFileSync(file, '')
    const r = await runDoctor({paths: new StatePaths(join(file, 'state'))}, {env: {PATH: ''}, platform: 'linux', launchers: []})
    const sd = r.checks.find((c) => c.id === 'state-dir')!
    expect(sd.ok).toBe(false)
    expect(sd.fix).toMatch(/AGENT_STATE_DIR/)
    const good = await runDoctor({paths}, {env: {PATH: ''}, platform: 'linux', launchers: []})
    expect(good.checks.find((c) => c.id === 'state-dir')).toMatchObject({ok: true, detail: `${paths.root} is writable`})
  })

  it('reads cgroup v2 and v1 layouts and names missing controllers', () => {
    const v2 = join(root, 'cg2')
    mkdirSync(v2, {recursive: true})
    writeFileSync(join(v2, 'cgroup.controllers'), 'cpuset cpu io memory hugetlb pids rdma\n')
    expect(checkCgroups({cgroupRoot: v2, procCgroups: '/nonexistent'}, ['runc'])).toMatchObject({ok: true, detail: 'cgroup v2 (memory, pids present)'})
    writeFileSync(join(v2, 'cgroup.controllers'), 'cpu io memory\n')
    const bad = checkCgroups({cgroupRoot: v2, procCgroups: '/nonexistent'}, ['runc'])
    expect(bad).toMatchObject({ok: false, detail: 'cgroup v2, missing controllers: pids (have: cpu io memory)'})
    expect(bad.fix).toMatch(/pids/)

    const v1 = join(root, 'cg1')
    for (const d of ['memory', 'pids', 'unified']) mkdirSync(join(v1, d), {recursive: true})
    const proc = join(root, 'proc-cgroups')
    writeFileSync(proc, '#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\nmemory\t4\t24\t1\npids\t8\t1\t1\n')
    expect(checkCgroups({cgroupRoot: v1, procCgroups: proc}, ['runc'])).toMatchObject({ok: true, detail: 'cgroup v1 hybrid (memory, pids mounted)'})
    writeFileSync(proc, '#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t0\t1\t0\npids\t8\t1\t1\n')
    expect(checkCgroups({cgroupRoot: v1, procCgroups: proc}, ['runc'])).toMatchObject({ok: false, detail: 'cgroup v1 hybrid, missing or unmounted controllers: memory'})
  })

  it('fails with an unavailable error (exit 5) when no launcher is usable', async () => {
    const r = await runDoctor({paths}, {
      env: {PATH: ''},
      platform: 'linux',
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

  it('with the real launchers: all four, and every check once, each launcher\'s next to it', async () => {
    // What this host can run is asserted in test/e2e/doctor-host.test.ts (e2e project).
    expect((await allLaunchers()).map((l) => l.name)).toEqual(['krunvm', 'gvisor', 'runc', 'kubernetes'])
    // No cluster configured: kubernetes is listed and adds no checks (it asks no cluster).
    const env = {...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AGENT_K8S_') && !k.startsWith('KUBERNETES_'))), KUBECONFIG: '/nonexistent/kubeconfig', HOME: '/nonexistent'}
    const r = await runDoctor({paths}, {platform: 'linux', env})
    expect(r.launchers.map((l) => l.name)).toEqual(['krunvm', 'gvisor', 'runc', 'kubernetes'])
    expect(r.checks.map((c) => c.id)).toEqual(['state-dir', 'krunvm', 'hypervisor', 'runsc', 'slirp4netns', 'nft', 'dnsmasq', 'cgroups', 'runc', 'buildah', 'image-storage'])
  })
})
