import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {channelSocketPath} from '../../packages/cli/src/launchers/guest-channel.js'
import {agentIn, tempState} from '../helpers/agent.js'
import {waitUntil} from '../helpers/wait.js'
import {Bystander, cleanVms, createVm, LAUNCHERS, rand, removeStateDir, spawnAgent} from './helpers.js'

// agent-init's exec channel (guest/README.md) faced with hostile guest code and a client that
// disappears, through the real CLI on real VMs. The host side must treat every byte from the
// guest as hostile; a guest must never reach another VM's channel; a killed `agent vm exec`
// must take its guest command with it.

/**
 * A hostile guest process: it keeps replacing agent-init's socket with its own (agent-init takes
 * the name back every second; this re-takes it every 50 ms) and answers each connection with a
 * different malformed conversation. Every mode is malformed on purpose: a well-formed lie about
 * its own VM's command is within what guest root controls anyway.
 */
const HOSTILE = String.raw`
import os, socket, struct, threading, time, sys
P = '/.agent-chan/init.sock'
def frame(t, p=b''): return struct.pack('>IB', len(p) + 1, t) + p
HELLO_OK = frame(0x81, b'AGCH\x00\x01\x00\x00\x00\x0f')
STARTED = frame(0x83, b'\x00\x00\x00\x05')
def after_exec(c, data):
    c.sendall(HELLO_OK); c.recv(65536); c.sendall(data)
MODES = [
    lambda c: c.sendall(os.urandom(64)),                                   # garbage instead of a hello
    lambda c: c.sendall(b'\xff\xff\xff\xff\x81' + b'A' * 4096),             # a 4 GiB frame header
    lambda c: after_exec(c, b'\x7f\xff\xff\xff\x84' + b'B' * 4096),         # a 2 GiB output frame
    lambda c: after_exec(c, STARTED + frame(0x86, b'\x09')),               # a short exit report
    lambda c: after_exec(c, STARTED + frame(0x86, b'\x07' + b'\x00' * 8)),  # an unknown exit reason
    lambda c: after_exec(c, frame(0x55, b'/etc/shadow')),                  # an unknown frame type
    lambda c: after_exec(c, STARTED + frame(0x8f, b'\x1b[2J/../../etc/passwd\n' * 40)),  # an error with escapes and paths
    lambda c: c.close(),                                                   # hang up at once
    lambda c: after_exec(c, b''),                                          # accept the exec, then say nothing
]
n = [0]
def serve(c):
    i = n[0]; n[0] += 1
    try:
        c.recv(64)
        MODES[i % len(MODES)](c)
        time.sleep(30)
    except OSError:
        pass
    finally:
        c.close()
def take():
    try: os.unlink(P)
    except OSError: pass
    s = socket.socket(socket.AF_UNIX); s.bind(P); s.listen(16); s.settimeout(0.05)
    return s, os.stat(P).st_ino
s, ino = take()
print('hostile: listening', flush=True)
while True:
    try:
        c, _ = s.accept(); c.settimeout(None)
        threading.Thread(target=serve, args=(c,), daemon=True).start()
    except socket.timeout:
        pass
    try: same = os.stat(P).st_ino == ino
    except OSError: same = False
    if not same:
        s.close(); s, ino = take()
`

describe.each(LAUNCHERS)('exec channel on %s', (launcher) => {
  const st = tempState(`agent-sec-chan-${launcher}-`)
  const env = {...st.env, AGENT_LAUNCHER: launcher}
  const a = agentIn(env)
  const by = new Bystander(a)
  const marker = `attacker-${rand(6)}`
  const files = mkdtempSync(join(tmpdir(), 'agent-sec-chan-files-'))
  const hostileFile = join(files, 'hostile.py')
  let id = ''

  beforeAll(async () => {
    writeFileSync(hostileFile, HOSTILE)
    ;[id] = await Promise.all([createVm(a, ['--mem', '128']), by.create()])
    const w = await a(['vm', 'exec', '--vm', id, '--cmd', `echo ${marker} > /root/marker`])
    expect(w.code, w.stderr).toBe(0)
  })
  afterAll(async () => {
    await cleanVms(a, st.dir)
    removeStateDir(st.dir)
    rmSync(files, {recursive: true, force: true})
  })

  /** `cat /root/marker` with debug logging: the output, and whether it went over the channel. */
  async function probe(vm: string): Promise<{code: number; stdout: string; stderr: string; channel: boolean; fallback: boolean}> {
    const r = await a(['vm', 'exec', '--vm', vm, '--timeout', '3', '--log-level', 'debug', '--cmd', 'cat /root/marker'])
    return {...r, channel: r.stderr.includes('exec over the channel'), fallback: r.stderr.includes('falling back to')}
  }

  it('execs go over the channel: 16 at once in one VM are independent', async () => {
    const p = await probe(id)
    expect(p.code, p.stderr).toBe(0)
    expect(p.stdout).toBe(`${marker}\n`)
    expect(p.channel, p.stderr).toBe(true)
    expect(p.fallback).toBe(false)
    const rs = await Promise.all(Array.from({length: 16}, (_, i) => a(['vm', 'exec', '--vm', id, '--cmd', `echo ${i}; sleep 0.$((${i} % 5)); exit ${i}`])))
    rs.forEach((r, i) => {
      expect(r.code, r.stderr).toBe(i)
      expect(r.stdout).toBe(`${i}\n`)
    })
  })

  it('a killed client (SIGKILL of agent vm exec) ends its guest command, whole tree, within 1 s', async () => {
    const tag = rand(4)
    // The victim ignores the polite signals; only the tree kill can end it.
    const victim = spawnAgent(['vm', 'exec', '--vm', id, '--timeout', '120', '--cmd', `trap '' TERM HUP INT; echo $$ > /tmp/victim-${tag}; sleep 300 & echo $! >> /tmp/victim-${tag}; echo started; wait`], env)
    expect(await waitUntil(() => victim.bytes() > 0, 60_000), 'the victim command did not start').toBe(true)
    // A watcher in the guest notes (guest wall clock = host wall clock) when both are gone.
    const watcher = spawnAgent(
      ['vm', 'exec', '--vm', id, '--timeout', '60', '--cmd', `echo watching; for p in $(cat /tmp/victim-${tag}); do while kill -0 $p 2>/dev/null; do sleep 0.02; done; done; date +%s%3N > /tmp/gone-${tag}`],
      env,
    )
    expect(await waitUntil(() => watcher.bytes() > 0, 60_000), 'the watcher did not start').toBe(true)
    const killedAt = Date.now()
    process.kill(victim.proc.pid!, 'SIGKILL')
    await victim.proc.catch(() => undefined)
    expect((await watcher.proc).exitCode).toBe(0)
    const w = await a(['vm', 'exec', '--vm', id, '--cmd', `cat /tmp/gone-${tag}`])
    expect(w.code, w.stderr).toBe(0)
    const goneAt = Number(w.stdout.trim())
    expect(goneAt - killedAt, `guest command gone ${goneAt - killedAt} ms after the kill`).toBeLessThan(1_000)
  })

  it('a hostile guest process that replaces the socket and speaks garbage cannot crash or confuse agent; the channel comes back', async () => {
    const hostile = spawnAgent(['vm', 'exec', '--vm', id, '--timeout', '600', '--file', hostileFile, '--cmd', 'python3 /in/hostile.py'], env)
    expect(await waitUntil(() => hostile.bytes() > 0, 60_000), 'the hostile server did not start').toBe(true)
    let affected = 0
    try {
      for (let i = 0; i < 12; i++) {
        const t0 = Date.now()
        const r = await a(['vm', 'exec', '--vm', id, '--timeout', '3', '--cmd', 'cat /root/marker'])
        const took = Date.now() - t0
        // Bounded: the guest's timeout plus the host's grace, plus the fallback's hello wait.
        expect(took, `exec ${i} took ${took} ms`).toBeLessThan(60_000)
        expect(r.stderr, 'agent crashed').not.toMatch(/^\s+at /m)
        if (r.code === 0) {
          expect(r.stdout).toBe(`${marker}\n`) // the real command, over the channel or the fallback
        } else if (r.code === 124) {
          affected++ // the silent impostor, cut at the host's deadline
          expect(r.stderr).toMatch(/timed out after 3s/)
        } else {
          affected++
          expect(r.code, r.stderr).toBe(1)
          // One clean line; nothing the impostor sent reaches the terminal raw.
          expect(r.stderr).toMatch(/^Error: exec in \S+: the guest's exec channel broke/)
          expect(r.stderr).not.toMatch(/\x1b/)
          expect(r.stderr.length).toBeLessThan(1_000)
        }
      }
      // Meanwhile the bystander's channel is its own: right answer, over the channel.
      const b = await probe(by.id)
      expect(b.code, b.stderr).toBe(0)
      expect(b.channel && !b.fallback, b.stderr).toBe(true)
      await by.expectUnaffected()
    } finally {
      process.kill(hostile.proc.pid!, 'SIGKILL')
      await hostile.proc.catch(() => undefined)
    }
    // Fallbacks answered correctly above; the modes that break mid-exec must have been met.
    expect(affected, 'the impostor was never reached: the test proved nothing').toBeGreaterThan(0)
    // The impostor died with its exec's client; agent-init takes its name back within a second.
    expect(await waitUntil(async () => (await probe(id)).channel, 30_000, 200), 'the channel did not come back').toBe(true)
    const p = await probe(id)
    expect(p.code, p.stderr).toBe(0)
    expect(p.stdout).toBe(`${marker}\n`)
    expect(p.fallback).toBe(false)
  })

  it("a guest cannot impersonate agent-init to another VM: a symlink to the bystander's socket is never followed", async () => {
    // Even knowing the bystander's host socket path, the attacker can only plant a link to it.
    const target = channelSocketPath(join(st.dir, 'vms', by.id))
    const planter = spawnAgent(['vm', 'exec', '--vm', id, '--timeout', '120', '--cmd', `echo planting; while true; do rm -f /.agent-chan/init.sock; ln -s ${target} /.agent-chan/init.sock; sleep 0.02; done`], env)
    expect(await waitUntil(() => planter.bytes() > 0, 60_000), 'the planter did not start').toBe(true)
    try {
      for (let i = 0; i < 3; i++) {
        const r = await probe(id)
        expect(r.code, r.stderr).toBe(0)
        expect(r.stdout, 'an exec in the attacker VM ran in the bystander').toBe(`${marker}\n`)
      }
    } finally {
      process.kill(planter.proc.pid!, 'SIGKILL')
      await planter.proc.catch(() => undefined)
    }
    // And no other VM's channel is reachable from inside: only its own socket exists. agent-init
    // takes its name back within a second of the planter's end (its check is once a second), and a
    // fast CLI can get here first: wait until the name has been a socket for 0.5 s (the planter
    // replaced it every 20 ms), then look.
    const r = await a(['vm', 'exec', '--vm', id, '--cmd', `python3 -c "
import os, stat, time
steady, deadline = 0, time.time() + 30
while steady < 5 and time.time() < deadline:
    try: steady = steady + 1 if stat.S_ISSOCK(os.lstat('/.agent-chan/init.sock').st_mode) else 0
    except OSError: steady = 0
    time.sleep(0.1)
for d, subs, fs in os.walk('/'):
    subs[:] = [s for s in subs if os.path.join(d, s) not in ('/proc', '/sys', '/dev')]
    for f in fs:
        try:
            if stat.S_ISSOCK(os.lstat(os.path.join(d, f)).st_mode): print(os.path.join(d, f))
        except OSError: pass
"`])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout.trim().split('\n').filter(Boolean)).toEqual(['/.agent-chan/init.sock'])
    await by.expectUnaffected()
  })

  it(`guest code cannot drive the channel itself (${launcher === 'runc' ? 'refused by peer credentials' : 'gVisor: root-only socket; peer credentials cannot tell, see docs/security.md'})`, async () => {
    const r = await a(['vm', 'exec', '--vm', id, '--cmd', `python3 -c "
import socket, struct, os, stat
st = os.lstat('/.agent-chan/init.sock'); print(oct(stat.S_IMODE(st.st_mode)), oct(stat.S_IMODE(os.lstat('/.agent-chan').st_mode)))
s = socket.socket(socket.AF_UNIX); s.connect('/.agent-chan/init.sock')
s.sendall(struct.pack('>IB', 9, 1) + b'AGCH' + struct.pack('>HH', 1, 1))
print(s.recv(200)[4:6].hex())
"`])
    expect(r.code, r.stderr).toBe(0)
    const [modes, answer] = r.stdout.trim().split('\n')
    expect(modes).toBe('0o600 0o700') // no unprivileged guest user can connect
    // runc: the guest's own connection is refused (0x8f, an error). gVisor reports the same
    // credentials for every connection to a host-backed socket, so there it is accepted (0x81):
    // guest root gains nothing by it, and non-root guest code cannot open the socket at all.
    expect(answer).toBe(launcher === 'runc' ? '8f63' : '8141')
  })
})
