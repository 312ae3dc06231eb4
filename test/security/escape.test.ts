import {mkdirSync, readFileSync, symlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {agentIn, tempState} from '../helpers/agent.js'
import {cleanVms, Bystander, createVm, expectHostProcessesNear, hostProcessCount, hostSecretFile, LAUNCHERS, rand, removeStateDir} from './helpers.js'

/** Each attempt prints "name OK <value>" or "name ERR <errno name>". */
const SYSCALLS = `
import ctypes, errno, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
out = {}
def attempt(name, f):
    try:
        f(); out[name] = "OK"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
def check(rv):
    if rv == -1:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
def ptrace_init():
    check(libc.ptrace(PTRACE_ATTACH, 1, None, None))
    os.waitpid(1, 0x40000000)  # __WALL: the stop
    libc.ptrace(PTRACE_DETACH, 1, None, None)
attempt("ptrace_pid1", ptrace_init)
attempt("raw_socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close())
attempt("packet_socket", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close())
attempt("mknod_block", lambda: os.mknod("/tmp/sda", 0o600 | 0o060000, os.makedev(8, 0)))
attempt("mknod_char", lambda: os.mknod("/tmp/mem", 0o600 | 0o020000, os.makedev(1, 1)))
attempt("init_module", lambda: check(libc.syscall(175, None, 0, b"")))
attempt("finit_module", lambda: check(libc.syscall(313, 0, b"", 0)))
attempt("mount_tmpfs", lambda: check(libc.mount(b"tmpfs", b"/mnt", b"tmpfs", 0, None)))
attempt("mount_bind", lambda: check(libc.mount(b"/tmp", b"/mnt", None, 4096, None)))
attempt("unshare_user", lambda: check(libc.unshare(0x10000000)))
# os.write, not a buffered file: Python drops the error a buffered write meets at close.
attempt("sysrq", lambda: os.write(os.open("/proc/sysrq-trigger", os.O_WRONLY), b"h"))
init = open("/proc/1/cmdline", "rb").read().split(bytes(1))[0].decode()
pids = [p for p in os.listdir("/proc") if p.isdigit()]
cmds = []
for p in pids:
    try: cmds.append(open("/proc/%s/cmdline" % p, "rb").read().replace(bytes(1), b" ").decode())
    except OSError: pass
print(json.dumps({"calls": out, "init": init, "npids": len(pids), "cmds": cmds}))
`

/** Walks the guest's whole file system for names that must not be there, and opens host paths directly. */
function seekScript(names: string[], hostPaths: string[]): string {
  return `
import json, os
names = set(${JSON.stringify(names)})
found = []
for root, dirs, files in os.walk("/", onerror=lambda e: None):
    if root == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    for n in dirs + files:
        if n in names:
            found.append(os.path.join(root, n))
opened = []
for p in ${JSON.stringify(hostPaths)}:
    for candidate in (p, "/proc/1/root" + p, "/../../../.." + p):
        try:
            open(candidate).read(); opened.append(candidate)
        except OSError:
            pass
print(json.dumps({"found": found, "opened": opened, "shadow": open("/etc/shadow").read()}))
`
}

// Escape attempts from a real VM: each is refused, or sees only the VM's own view.
describe.each(LAUNCHERS)('escape attempts on %s', (runtime) => {
  const st = tempState(`agent-sec-escape-${runtime}-`)
  const a = agentIn({...st.env, AGENT_RUNTIME: runtime})
  const by = new Bystander(a)
  const secret = hostSecretFile()
  const bySecretName = `bystander-secret-${rand(6)}.txt`
  const attackerName = `escaper-${runtime}`
  let id = ''
  let baseline = 0

  beforeAll(async () => {
    ;[id] = await Promise.all([createVm(a, ['--mem', '128', '--name', attackerName]), by.create()])
    // A secret in the bystander's /in, put there the normal way.
    const f = join(st.dir, bySecretName)
    writeFileSync(f, 'bystander secret\n')
    const put = await a(['vm', 'exec', '--vm', by.id, '--file', f, '--cmd', `cat /in/${bySecretName}`])
    expect(put.stdout).toBe('bystander secret\n')
    // This file's own host processes: other test files' VMs do not move this count.
    baseline = hostProcessCount(st.dir)
  })
  afterAll(async () => {
    await cleanVms(a, st.dir)
    secret.cleanup()
    removeStateDir(st.dir)
  })

  async function expectUnaffected(): Promise<void> {
    await by.expectUnaffected()
    expectHostProcessesNear(baseline, 100, st.dir)
    expect(readFileSync(secret.path, 'utf8')).toBe(`${secret.token}\n`)
  }

  it('cannot see host files, the state dir (agent.db) or another VM\'s /in', async () => {
    const hostShadow = readFileSync('/etc/shadow', 'utf8')
    const script = join(st.dir, 'seek.py')
    const inPath = join(st.dir, 'vms', by.id, 'in', bySecretName)
    writeFileSync(script, seekScript([secret.path.split('/').pop()!, 'agent.db', bySecretName], [secret.path, join(st.dir, 'agent.db'), inPath, '/etc/shadow-host']))
    const r = await a(['vm', 'run', '--vm', id, '--file', script, '--timeout', '120'])
    expect(r.code, r.stderr).toBe(0)
    const res = JSON.parse(r.stdout) as {found: string[]; opened: string[]; shadow: string}
    expect(res.found).toEqual([])
    expect(res.opened).toEqual([])
    expect(res.shadow).not.toBe(hostShadow) // the image's own /etc/shadow, never the host's
    expect(res.shadow).not.toContain(hostShadow.split('\n')[0])
    await expectUnaffected()
  })

  it('refuses mount, kernel modules, raw and packet sockets, device nodes, /proc/sysrq-trigger; sees only its own processes', async () => {
    const r = await a(['vm', 'exec', '--vm', id, '--cmd', `python3 -c '${SYSCALLS}'`])
    expect(r.code, r.stderr).toBe(0)
    const res = JSON.parse(r.stdout) as {calls: Record<string, string>; init: string; npids: number; cmds: string[]}
    const refused = ['EPERM', 'EACCES', 'EROFS', 'ENOENT', 'ENOSYS']
    // gVisor 20240729 lets /proc/sysrq-trigger (its own) open for writing and fails the write with EIO.
    for (const call of ['raw_socket', 'packet_socket', 'mknod_block', 'mknod_char', 'init_module', 'finit_module', 'mount_tmpfs', 'mount_bind', 'sysrq']) {
      expect(call === 'sysrq' ? [...refused, 'EIO'] : refused, `${call}: ${res.calls[call]}`).toContain(res.calls[call])
    }
    expect(res.calls.raw_socket).toBe('EPERM') // no CAP_NET_RAW
    expect(res.calls.mknod_block).toBe('EPERM') // no CAP_MKNOD
    expect(res.calls.init_module).toBe('EPERM')
    expect(res.calls.mount_tmpfs).toBe('EPERM')
    // The guest's /proc is its own PID namespace: PID 1 is agent's init, no host process is visible.
    expect(res.init).toBe('/.agent/agent-init')
    expect(res.npids).toBeLessThan(20)
    for (const c of res.cmds) expect(c).not.toMatch(/vitest|runsc|runc |buildah|slirp4netns|bin\/run\.js/)
    // agent-init makes itself non-dumpable, and the guest has no CAP_SYS_PTRACE.
    expect(res.calls.ptrace_pid1).toBe('EPERM')
    if (runtime === 'gvisor') {
      // gVisor's own user namespaces live inside the sentry: allowed, and no host capability.
      expect(res.calls.unshare_user).toBe('OK')
    } else {
      expect(res.calls.unshare_user).toBe('EPERM') // seccomp: no new user namespaces
    }
    const sh = await a(['vm', 'exec', '--vm', id, '--cmd', 'mkdir -p /mnt/x; mount -t tmpfs none /mnt/x; echo tmpfs=$?; mount --bind /tmp /mnt/x; echo bind=$?; unshare -U true; echo unshare=$?; modprobe dummy; echo modprobe=$?'])
    expect(sh.stdout).toMatch(/tmpfs=(?!0)\d+/)
    expect(sh.stdout).toMatch(/bind=(?!0)\d+/)
    expect(sh.stdout).toMatch(/modprobe=(?!0)\d+/) // not even in the image; the syscall is refused above
    expect(sh.stdout).toMatch(runtime === 'runc' ? /unshare=1/ : /unshare=0/)
    await expectUnaffected()
  })

  it('refuses --file that is a directory, missing, or a symlink to a host secret, copying nothing', async () => {
    const dir = join(st.dir, 'files')
    mkdirSync(dir, {recursive: true})
    const link = join(dir, 'innocent.txt')
    symlinkSync(secret.path, link)
    for (const [f, msg] of [
      [dir, /is a directory/],
      [join(dir, 'missing.py'), /does not exist/],
      [link, /symbolic link/],
    ] as const) {
      const r = await a(['vm', 'exec', '--vm', id, '--file', f, '--cmd', 'true'])
      expect(r.code, String(f)).toBe(2)
      expect(r.stderr).toMatch(msg)
    }
    const seen = await a(['vm', 'exec', '--vm', id, '--cmd', `python3 -c "import os; print(' '.join(sorted(os.listdir('/in'))))"; grep -rs ${secret.token} /in; echo grep=$?`])
    expect(seen.stdout).toMatch(/grep=1\n$/)
    for (const n of ['files', 'missing.py', 'innocent.txt']) expect(seen.stdout.split('\n')[0].split(' ')).not.toContain(n)
    await expectUnaffected()
  })

  it('leftovers: /tmp of one VM is not visible in another, nor after clean and re-create', async () => {
    const left = `leftover-${rand(6)}`
    expect((await a(['vm', 'exec', '--vm', id, '--cmd', `echo x > /tmp/${left} && echo x > /root/${left} && cat /tmp/${left}`])).stdout).toBe('x\n')
    const probe = `for f in /tmp/${left} /root/${left}; do test -e $f && echo "seen $f"; done; echo done`
    expect((await a(['vm', 'exec', '--vm', by.id, '--cmd', probe])).stdout).toBe('done\n')
    const clean = await a(['vm', 'clean', id])
    expect(clean.code, clean.stderr).toBe(0)
    id = await createVm(a, ['--mem', '128', '--name', attackerName])
    expect((await a(['vm', 'exec', '--vm', id, '--cmd', probe])).stdout).toBe('done\n')
    await expectUnaffected()
  })
})
