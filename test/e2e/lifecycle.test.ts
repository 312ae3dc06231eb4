import {existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {agentIn, tempState} from '../helpers/agent.js'
import {buildahContainers, mountsOf, runtimeContainers, vmDirs} from '../helpers/host.js'

// Lists the guest's processes without ps (not in the images): python reads /proc.
const PS = `python3 -c "import os; print(' '.join(open('/proc/%s/comm' % p).read().strip() for p in os.listdir('/proc') if p.isdigit()))"`

// The whole vm lifecycle through real `agent` processes, on both OCI launchers.
describe.each(['gvisor', 'runc'] as const)('vm lifecycle on %s', (runtime) => {
  const st = tempState(`agent-life-${runtime}-`)
  const a = agentIn({...st.env, AGENT_RUNTIME: runtime})
  let id = ''
  beforeAll(async () => {
    const r = await a(['vm', 'create', '--language', 'python', '--mem', '128', '--name', `life-${runtime}`])
    expect(r.code, r.stderr).toBe(0)
    id = r.stdout.trim()
    expect(id).toMatch(/^python-[0-9a-f]{8}$/)
    expect(r.stderr).toMatch(/image localhost\/agent\/python:\d+\.\d+ /)
  })
  afterAll(async () => {
    await a(['vm', 'clean', '--all'])
    st.cleanup()
  })

  it('records the launcher and shows the VM as running', async () => {
    const list = JSON.parse((await a(['vm', 'list', '--json'])).stdout)
    expect(list).toHaveLength(1)
    expect(list[0]).toMatchObject({id, name: `life-${runtime}`, launcher: runtime, status: 'running', cpus: 1, memoryMib: 128, network: 'none'})
  })

  it('runs the hello, then a file by the python convention, by id and by name', async () => {
    const hello = await a(['vm', 'exec', '--vm', id, '--hello'])
    expect(hello.code, hello.stderr).toBe(0)
    expect(hello.stdout).toMatch(/^hello from python 3\.\d+/)
    const main = join(st.dir, 'main.py')
    writeFileSync(main, 'import sys\nprint("sum", sum(range(10)), file=sys.stdout)\n')
    const run = await a(['vm', 'run', '--vm', `life-${runtime}`, '--file', main])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toBe('sum 45\n')
  })

  it('passes the exit code through, and stdin in', async () => {
    const r = await a(['vm', 'exec', '--vm', id, '--cmd', 'echo out; echo err >&2; exit 7'])
    expect(r.code).toBe(7)
    expect(r.stdout).toBe('out\n')
    expect(r.stderr).toContain('err')
    const cat = await a(['vm', 'exec', '--vm', id, '--cmd', 'tr a-z A-Z'], {input: 'hello stdin\n'})
    expect(cat.stdout).toBe('HELLO STDIN\n')
  })

  it('keeps files between commands, and copies /out back', async () => {
    expect((await a(['vm', 'exec', '--vm', id, '--cmd', 'echo kept > /root/note && mkdir -p /out/sub && echo result > /out/sub/r.txt'])).code).toBe(0)
    const out = join(st.dir, 'results')
    const r = await a(['vm', 'exec', '--vm', id, '--cmd', 'cat /root/note', '--out', out])
    expect(r.stdout).toBe('kept\n')
    expect(readFileSync(join(out, 'sub', 'r.txt'), 'utf8')).toBe('result\n')
  })

  it('kills `sleep 100` at --timeout 2 with 124, leaving no process of it', async () => {
    // agent's own cost, measured now on this (possibly loaded) host, is not the command's.
    const overhead = (await a(['vm', 'exec', '--vm', id, '--cmd', 'true'])).durationMs
    const r = await a(['vm', 'exec', '--vm', id, '--timeout', '2', '--cmd', 'sleep 100 & sleep 100'])
    expect(r.code).toBe(124)
    // Killed at 2 s, not after 100: a bound far from both holds on a loaded host.
    expect(r.durationMs - overhead).toBeLessThan(60_000)
    expect(r.stderr).toMatch(/timed out after 2s/)
    const ps = await a(['vm', 'exec', '--vm', id, '--cmd', PS])
    expect(ps.code, ps.stderr).toBe(0)
    expect(ps.stdout).toMatch(/agent-init/)
    expect(ps.stdout).not.toMatch(/sleep/)
    expect((await a(['vm', 'exec', '--vm', id, '--cmd', 'echo alive'])).stdout).toBe('alive\n')
  })

  it('ends a command that allocates twice --mem with 137 and says it ran out of memory', async () => {
    const r = await a(['vm', 'exec', '--vm', id, '--timeout', '60', '--cmd', 'python3 -c "b = bytearray(256 * 1024 * 1024); print(len(b))"'])
    expect(r.code).toBe(137)
    expect(r.stderr).toMatch(/ran out of memory.*128 MiB/)
    expect(r.stdout).toBe('')
    // The VM is still usable afterwards (gVisor loses the sandbox and agent boots it again).
    const after = await a(['vm', 'exec', '--vm', id, '--cmd', 'echo still here'])
    expect(after.stdout).toBe('still here\n')
  })

  it('cannot open any outbound connection with --network none', async () => {
    const code = `
import socket
ok = []
for host, port in [("10.0.2.2", 80), ("1.1.1.1", 53), ("127.0.0.1", 1), ("deb.debian.org", 80)]:
    try:
        s = socket.create_connection((host, port), timeout=2); ok.append(host)
    except Exception as e:
        pass
print("connected:", ok)
`
    writeFileSync(join(st.dir, 'net.py'), code)
    const r = await a(['vm', 'run', '--vm', id, '--file', join(st.dir, 'net.py')])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout.trim()).toBe('connected: []')
    const ifs = await a(['vm', 'exec', '--vm', id, '--cmd', 'cat /proc/net/dev'])
    expect(ifs.stdout.split('\n').filter((l) => l.includes(':')).map((l) => l.split(':')[0].trim()).filter((n) => n !== 'lo')).toEqual([])
  })

  it('a command that exits 124 by itself is not reported as a timeout (the guest init reports timeouts)', async () => {
    const r = await a(['vm', 'exec', '--vm', id, '--json', '--timeout', '5', '--cmd', 'sleep 1; exit 124'])
    expect(r.code).toBe(124)
    const [doc] = JSON.parse(r.stdout)
    expect(doc).toMatchObject({exitCode: 124, timedOut: false, error: null})
    expect(r.stderr).not.toMatch(/timed out/)
  })

  it('refuses a file the language cannot run with a usage error naming the extensions it runs', async () => {
    writeFileSync(join(st.dir, 'notes.txt'), 'not code')
    const r = await a(['vm', 'run', '--vm', id, '--file', join(st.dir, 'notes.txt')])
    expect(r.code, r.stderr).toBe(2)
    expect(r.stderr).toMatch(/python does not know how to run "\.txt" files \(it runs: \.py\)/)
    expect(r.stderr).not.toMatch(/internal error/)
    const ls = await a(['vm', 'exec', '--vm', id, '--cmd', 'test ! -e /in/notes.txt'])
    expect(ls.code, 'nothing was copied before the refusal').toBe(0)
  })

  it('refuses hostile file names and paths before copying anything', async () => {
    const dir = join(st.dir, 'hostile')
    mkdirSync(dir, {recursive: true})
    const nl = join(dir, 'a\nb.py')
    writeFileSync(nl, 'print(1)')
    for (const [f, msg] of [
      [nl, /control character|not a plain file name/],
      [dir, /is a directory/],
      [join(dir, 'missing.py'), /does not exist/],
    ] as const) {
      const r = await a(['vm', 'run', '--vm', id, '--file', f])
      expect(r.code, String(f)).toBe(2)
      expect(r.stderr).toMatch(msg)
    }
    writeFileSync(join(st.dir, 'passwd'), 'not the host one\n')
    const contained = await a(['vm', 'run', '--vm', id, '--file', join(st.dir, '..', st.dir.split('/').pop()!, 'passwd'), '--cmd', 'cat /in/passwd && test ! -e /in/etc'])
    expect(contained.code).toBe(0)
    expect(contained.stdout).toMatch(/^not the host one\n/)
    const ro = await a(['vm', 'exec', '--vm', id, '--cmd', 'echo x > /in/passwd'])
    expect(ro.code).not.toBe(0)
  })

  it('stop keeps the files; start boots the VM again with them', async () => {
    expect((await a(['vm', 'exec', '--vm', id, '--cmd', 'echo before-stop > /var/tmp/marker'])).code).toBe(0)
    const stop = await a(['vm', 'stop', id])
    expect(stop.code, stop.stderr).toBe(0)
    expect(JSON.parse((await a(['vm', 'list', '--all', '--json'])).stdout)[0].status).toBe('stopped')
    expect(await runtimeContainers(st.dir, runtime)).toEqual([])
    const refused = await a(['vm', 'exec', '--vm', id, '--cmd', 'true'])
    expect(refused.code).toBe(4)
    expect(refused.stderr).toMatch(/is stopped.*agent vm start/s)
    const start = await a(['vm', 'start', id])
    expect(start.code, start.stderr).toBe(0)
    expect((await a(['vm', 'exec', '--vm', id, '--cmd', 'cat /var/tmp/marker'])).stdout).toBe('before-stop\n')
  })

  it('clean leaves no runtime container, no working container, no dirs, no mounts and no row', async () => {
    const r = await a(['vm', 'clean', id])
    expect(r.code, r.stderr).toBe(0)
    expect(await runtimeContainers(st.dir, runtime)).toEqual([])
    expect((await buildahContainers()).filter((c) => c.includes(id))).toEqual([])
    expect(vmDirs(st.dir)).toEqual([])
    expect(existsSync(join(st.dir, 'persist', id))).toBe(false)
    expect(await mountsOf(id)).toEqual([])
    expect(JSON.parse((await a(['vm', 'list', '--all', '--json'])).stdout)).toEqual([])
  })
})
