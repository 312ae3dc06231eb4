import {describe, expect, it} from 'vitest'
import {buildOciSpec, CAPABILITIES, cgroupsPath, GUEST_CHANNEL_DIR, GUEST_CHANNEL_SOCKET, INIT_PATH, type OciSpecInput} from './oci-spec.js'

const base: OciSpecInput = {
  flavour: 'runc',
  id: 'python-0123abcd',
  rootfs: '/s/vms/python-0123abcd/rootfs',
  guestDir: '/g',
  inDir: '/s/vms/python-0123abcd/in',
  outDir: '/s/vms/python-0123abcd/disk/out',
  tmpDir: '/s/vms/python-0123abcd/disk/tmp',
  cpus: 1.5,
  memoryMib: 64,
  pids: 100,
  env: {LANG: 'C.UTF-8'},
  nofile: 4096,
}

type Spec = {
  process: {args: string[]; env: string[]; noNewPrivileges: boolean; capabilities: Record<string, string[]>; user: {uid: number}; rlimits: Array<{type: string; hard: number}>}
  hostname: string
  root: {path: string}
  mounts: Array<{destination: string; source: string; type: string; options: string[]}>
  linux: {
    cgroupsPath: string
    namespaces: Array<{type: string; path?: string}>
    resources: {memory: {limit: number; swap: number}; cpu: {quota: number; period: number}; pids: {limit: number}; devices: Array<{allow: boolean; major?: number}>}
    maskedPaths: string[]
    readonlyPaths: string[]
    seccomp?: {syscalls: Array<{names: string[]}>}
  }
}
const spec = (over: Partial<OciSpecInput> = {}) => buildOciSpec({...base, ...over}) as unknown as Spec

describe('buildOciSpec', () => {
  it('with a channel dir, agent-init serves the exec channel from a read-write, noexec bind of it', () => {
    const s = spec({channelDir: '/s/vms/python-0123abcd/disk/chan'})
    expect(s.process.args).toEqual([INIT_PATH, 'init', '--channel', GUEST_CHANNEL_SOCKET])
    expect(GUEST_CHANNEL_SOCKET.startsWith(`${GUEST_CHANNEL_DIR}/`)).toBe(true)
    const m = s.mounts.find((x) => x.destination === GUEST_CHANNEL_DIR)
    expect(m).toMatchObject({type: 'bind', source: '/s/vms/python-0123abcd/disk/chan'})
    expect(m!.options).toEqual(expect.arrayContaining(['rw', 'noexec', 'nosuid', 'nodev']))
    // Without one (a spec written before the channel existed) nothing changes.
    expect(spec().mounts.some((x) => x.destination === GUEST_CHANNEL_DIR)).toBe(false)
  })

  it('runs agent-init as an idle PID 1, as root, with no new privileges', () => {
    const s = spec()
    expect(s.process.args).toEqual([INIT_PATH, 'init'])
    expect(s.process.user.uid).toBe(0)
    expect(s.process.noNewPrivileges).toBe(true)
    expect(s.hostname).toBe('python-0123abcd')
    expect(s.root.path).toBe(base.rootfs)
    expect(s.process.env).toContain('LANG=C.UTF-8')
    expect(s.process.env.some((e) => e.startsWith('PATH=/usr/local/sbin'))).toBe(true)
    expect(s.process.rlimits.find((r) => r.type === 'RLIMIT_NOFILE')?.hard).toBe(4096)
  })

  it('keeps a minimal capability set', () => {
    const caps = spec().process.capabilities
    for (const set of ['bounding', 'effective', 'permitted']) {
      expect(caps[set]).toEqual([...CAPABILITIES])
      for (const bad of ['CAP_SYS_ADMIN', 'CAP_SYS_MODULE', 'CAP_SYS_PTRACE', 'CAP_NET_RAW', 'CAP_NET_ADMIN', 'CAP_MKNOD', 'CAP_SYS_RESOURCE'])
        expect(caps[set]).not.toContain(bad)
    }
    expect(caps.inheritable).toBeUndefined()
    expect(caps.ambient).toBeUndefined()
  })

  it('sets memory (no swap), cpu quota and pids limits under a cgroup derived from the id', () => {
    const s = spec()
    expect(s.linux.cgroupsPath).toBe(cgroupsPath('python-0123abcd'))
    expect(s.linux.cgroupsPath).toBe('/agent/python-0123abcd')
    expect(s.linux.resources.memory).toEqual({limit: 64 * 1024 * 1024, swap: 64 * 1024 * 1024})
    expect(s.linux.resources.cpu).toEqual({quota: 150_000, period: 100_000})
    expect(s.linux.resources.pids).toEqual({limit: 100})
    expect(s.linux.resources.devices[0]).toEqual({allow: false, access: 'rwm'})
  })

  it('mounts /in read-only, /out and /tmp read-write on the disk, /.agent read-only, /persist only when asked', () => {
    const byDest = (s: Spec) => new Map(s.mounts.map((m) => [m.destination, m]))
    let m = byDest(spec())
    expect(m.get('/in')).toMatchObject({source: base.inDir, type: 'bind'})
    expect(m.get('/in')!.options).toContain('ro')
    expect(m.get('/.agent')!.options).toContain('ro')
    expect(m.get('/out')).toMatchObject({source: base.outDir})
    expect(m.get('/out')!.options).toContain('rw')
    expect(m.get('/tmp')).toMatchObject({source: base.tmpDir, type: 'bind'})
    expect(m.has('/persist')).toBe(false)
    m = byDest(spec({persistDir: '/s/persist/x'}))
    expect(m.get('/persist')).toMatchObject({source: '/s/persist/x'})
    // No host devices are bind-mounted.
    expect([...m.values()].filter((x) => x.source.startsWith('/dev'))).toEqual([])
  })

  it('masks /proc like Docker', () => {
    const s = spec()
    expect(s.linux.maskedPaths).toContain('/proc/kcore')
    expect(s.linux.readonlyPaths).toContain('/proc/sys')
  })

  it('uses a fresh network namespace, or the prepared one by path', () => {
    expect(spec().linux.namespaces).toContainEqual({type: 'network'})
    expect(spec({netnsPath: '/s/vms/x/netns'}).linux.namespaces).toContainEqual({type: 'network', path: '/s/vms/x/netns'})
  })

  it('differs by flavour: cgroup ns, cgroupfs and seccomp for runc only', () => {
    const runc = spec()
    const runsc = spec({flavour: 'runsc'})
    expect(runc.linux.namespaces.map((n) => n.type)).toContain('cgroup')
    expect(runsc.linux.namespaces.map((n) => n.type)).not.toContain('cgroup')
    expect(runc.linux.seccomp?.syscalls[0]!.names).toContain('unshare')
    expect(runsc.linux.seccomp).toBeUndefined()
    expect(runsc.mounts.map((m) => m.destination)).not.toContain('/sys/fs/cgroup')
  })
})
