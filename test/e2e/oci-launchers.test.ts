/**
 * The gvisor and runc launchers driven directly (no CLI): real runsc and runc, real buildah, real
 * mounts, no mocks. Needs root and the runtimes; boots the Debian base image that the e2e global
 * setup builds into the shared test image store (test/helpers/global-setup.ts). It never skips:
 * a missing prerequisite fails the file with the reason.
 */
import {execa} from 'execa'
import {existsSync, mkdtempSync, readFileSync, rmSync, statSync} from 'node:fs'
import {createServer, type Server} from 'node:net'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {ensureStateDir, type StatePaths} from '../../packages/cli/src/config/state-dir.js'
import {BASE_IMAGE} from '../../packages/cli/src/images/base-image.js'
import {Buildah} from '../../packages/cli/src/images/buildah.js'
import {imageStore} from '../../packages/cli/src/images/storage.js'
import {vmRecord, type VmRecord} from '../../packages/cli/src/state/vm-record.js'
import {diskLayout, mountsUnder} from '../../packages/cli/src/launchers/disk.js'
import {GvisorLauncher} from '../../packages/cli/src/launchers/gvisor.js'
import type {ExecRequest, LaunchContext} from '../../packages/cli/src/launchers/launcher.js'
import {containerName, type OciLauncher} from '../../packages/cli/src/launchers/oci.js'
import {RuncLauncher} from '../../packages/cli/src/launchers/runc.js'
import {ROOT, TEST_IMAGE_STORE} from '../helpers/agent.js'
import {waitUntil} from '../helpers/wait.js'

// The launchers find images through AGENT_IMAGE_STORE: the store the global setup fills.
process.env.AGENT_IMAGE_STORE = TEST_IMAGE_STORE
const IMAGE = BASE_IMAGE
const guestDir = join(ROOT, 'guest', 'bin')

/** Why this host cannot run these tests, if it cannot. */
async function missingPrerequisite(l: OciLauncher): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not root'
  const a = await l.available()
  if (!a.ok) return `${l.name} unavailable: ${a.reason}`
  const b = new Buildah(imageStore('/nonexistent'))
  if (!(await b.imageExists(IMAGE))) return `image ${IMAGE} not in ${TEST_IMAGE_STORE} (the e2e global setup builds it)`
  if (!existsSync(join(guestDir, 'agent-init'))) return `${guestDir}/agent-init is missing: run \`npm run build\``
  return undefined
}

function testVm(launcher: 'gvisor' | 'runc', id: string, over: Partial<VmRecord> = {}): VmRecord {
  return vmRecord({id, plugin: 'test@0', image: IMAGE, imageSource: 'flag', launcher, memoryMib: 64, diskMib: 64, pids: 64, ...over})
}

const hex = () => Math.floor(Math.random() * 0xffffffff).toString(16).padStart(8, '0')

describe.each([
  ['gvisor', () => new GvisorLauncher()],
  ['runc', () => new RuncLauncher()],
] as const)('%s launcher (real runtime)', (name, make) => {
  const l = make()
  let paths: StatePaths
  let ctx: LaunchContext
  let root: string
  const vm = testVm(name, `debian-${hex()}`)
  const run = (argv: string[], over: Partial<ExecRequest> = {}) => l.exec(vm, ctx, {argv, timeoutSec: 30, output: 'capture', ...over})
  const sh = (script: string, over: Partial<ExecRequest> = {}) => run(['sh', '-c', script], over)
  /** gVisor may lose the whole sandbox to the host OOM killer: bring it back when it did. */
  const ensureRunning = async (v: VmRecord) => {
    const st = (await l.status([v], ctx)).get(v.id)
    if (st !== 'running') await l.start(v, ctx)
    return st
  }

  beforeAll(async () => {
    const missing = await missingPrerequisite(l)
    if (missing) throw new Error(`${name} launcher tests cannot run on this host: ${missing}`)
    root = mkdtempSync('/var/tmp/agent-oci-test-')
    paths = ensureStateDir(root)
    ctx = {paths, guestDir, env: {AGENT_TEST: '1'}, step: (s) => process.env.OCI_TEST_DEBUG && console.error(`${name} step: ${s}`)}
  })

  afterAll(async () => {
    if (!paths) return
    await l.remove(vm, ctx).catch(() => undefined)
    rmSync(root, {recursive: true, force: true})
  })

  it('creates a VM and runs commands in it (exit codes, files, stdin, env, capture cap)', async () => {
    const refs = await l.create(vm, ctx)
    if (process.env.OCI_TEST_DEBUG) console.error('created')
    expect(refs).toEqual({containerRef: containerName(vm.id), rootfsRef: join(paths.vmDir(vm.id), 'rootfs'), bundleRef: paths.bundleDir(vm.id)})
    const hello = await run(['echo', 'hello'])
    expect(hello).toMatchObject({exitCode: 0, stdout: 'hello\n', timedOut: false, oom: false})

    // Latency of a trivial exec, for the report.
    const t0 = Date.now()
    for (let i = 0; i < 5; i++) await run(['true'])
    console.log(`${name}: exec latency ${Math.round((Date.now() - t0) / 5)} ms (mean of 5)`)

    expect((await sh('exit 7')).exitCode).toBe(7)
    expect((await sh('kill -TERM $$')).exitCode).toBe(128 + 15)
    expect((await run(['/no/such/binary'])).exitCode).toBe(127)

    expect((await sh('echo kept > /root/f.txt && echo out > /out/result.txt')).exitCode).toBe(0)
    expect((await run(['cat', '/root/f.txt'])).stdout).toBe('kept\n')
    // /out is readable from the host through paths.outDir.
    expect(readFileSync(join(paths.outDir(vm.id), 'result.txt'), 'utf8')).toBe('out\n')

    const cat = await run(['cat'], {stdin: Readable.from([Buffer.from('piped in\n')])})
    expect(cat.stdout).toBe('piped in\n')
    expect((await run(['cat'])).stdout).toBe('') // no stdin: /dev/null

    const env = await sh('echo $AGENT_TEST $MINE $PATH; pwd', {env: {MINE: 'x'}, workdir: '/tmp'})
    expect(env.stdout).toMatch(/^1 x \/usr\/local\/sbin:.*\n\/tmp\n$/)

    const chunks: number[] = []
    const flood = await run(['head', '-c', '5000000', '/dev/zero'], {maxCaptureBytes: 1000, onOutput: (_s, b) => chunks.push(b.length)})
    expect(flood).toMatchObject({exitCode: 0, stdoutTruncated: true, stderrTruncated: false})
    expect(flood.stdout.length).toBe(1000)
    expect(chunks.reduce((a, b) => a + b, 0)).toBe(5_000_000)

    // The sandbox is what we asked for.
    const id = await sh('hostname; grep CapEff /proc/self/status; grep -c . /proc/net/dev')
    expect(id.stdout.split('\n')[0]).toBe(vm.id)
    expect(id.stdout).toContain('CapEff:\t00000000800405fb')
    // /in is read-only.
    expect((await sh('touch /in/x')).exitCode).not.toBe(0)
  })

  it('times out: kills the whole tree (setsid, ignored SIGTERM) and stays usable', async () => {
    // Bounds are orders of magnitude apart (a kill within a minute, a command of 1000 s), so
    // they hold on a loaded host and still prove the kill.
    const t0 = Date.now()
    const res = await sh('sleep 1000', {timeoutSec: 2})
    expect(res).toMatchObject({exitCode: 124, timedOut: true})
    expect(Date.now() - t0).toBeLessThan(60_000)

    const tree = await sh(
      `trap "" TERM; (trap "" TERM; setsid sh -c 'trap "" TERM; sleep 301 & sleep 302' &) ; (sleep 303 &); sleep 304`,
      {timeoutSec: 2},
    )
    expect(tree).toMatchObject({exitCode: 124, timedOut: true})
    // Nothing of either command remains (checked via /proc: minbase has no ps).
    const ps = await sh('for p in /proc/[0-9]*; do tr "\\0" " " < $p/cmdline 2>/dev/null; echo; done')
    expect(ps.stdout).not.toMatch(/sleep (1000|30[1-4])/)
    expect((await run(['echo', 'ok'])).stdout).toBe('ok\n')

    // Ctrl-C: an AbortSignal kills the command tree and returns promptly.
    const ac = new AbortController()
    setTimeout(() => ac.abort(), 1000)
    const t1 = Date.now()
    const aborted = await sh('sleep 305 & sleep 306', {signal: ac.signal})
    expect(aborted).toMatchObject({exitCode: 130, timedOut: false})
    expect(Date.now() - t1).toBeLessThan(60_000) // the command alone would take 306 s
    expect((await sh('for p in /proc/[0-9]*; do tr "\\0" " " < $p/cmdline 2>/dev/null; echo; done')).stdout).not.toMatch(/sleep 30[56]/)
  })

  it('reports OOM as 137 + oom when the command allocates past the memory limit', async () => {
    // tail buffers an endless "line" from /dev/zero: unbounded allocation.
    const res = await run(['tail', '/dev/zero'], {timeoutSec: 60})
    expect(res).toMatchObject({exitCode: 137, oom: true, timedOut: false})
    const before = await ensureRunning(vm)
    if (name === 'gvisor') console.log(`gvisor: after OOM the sandbox was ${before}`)
    expect((await run(['cat', '/root/f.txt'])).stdout).toBe('kept\n')
  })

  it('holds a fork bomb (pids limit) and the VM is usable afterwards', async () => {
    if (name === 'gvisor') {
      // gVisor holds guest processes with RLIMIT_NPROC (see gvisor.ts), not a pids cgroup, and the
      // bomb's stub processes stay until the sandbox restarts. So use a throwaway VM and prove the
      // damage stays inside it: bounded exec time, host cgroup limits held, other VMs unharmed.
      const bomb = testVm(name, `debian-${hex()}`)
      try {
        await l.create(bomb, ctx)
        const t0 = Date.now()
        const res = await l.exec(bomb, ctx, {argv: ['sh', '-c', 'b() { b | b & }; b; sleep 3'], timeoutSec: 8, output: 'capture'})
        expect(Date.now() - t0).toBeLessThan(90_000) // a bomb that escaped the timeout would never end
        console.log(`gvisor: fork bomb exit ${res.exitCode}, oom ${res.oom}`)
        const peak = Number(readFileSync(`/sys/fs/cgroup/memory/agent/${bomb.id}/memory.max_usage_in_bytes`, 'utf8'))
        expect(peak).toBeLessThanOrEqual((bomb.memoryMib + 64) * 1024 * 1024)
      } finally {
        await l.remove(bomb, ctx)
      }
      expect((await l.status([vm], ctx)).get(vm.id)).toBe('running')
    } else {
      const t0 = Date.now()
      const res = await sh('b() { b | b & }; b; sleep 3', {timeoutSec: 8})
      expect(Date.now() - t0).toBeLessThan(90_000) // a bomb that escaped the timeout would never end
      // The kernel refused forks at pids.max, and the VM never went down.
      expect(res.stderr).toMatch(/fork/i)
      expect(readFileSync(`/sys/fs/cgroup/pids/agent/${vm.id}/pids.events`, 'utf8')).toMatch(/^max [1-9]/m)
      expect((await l.status([vm], ctx)).get(vm.id)).toBe('running')
    }
    expect((await run(['echo', 'alive'])).stdout).toBe('alive\n')
    expect((await run(['cat', '/root/f.txt'])).stdout).toBe('kept\n')
  })

  it('bounds the disk: ENOSPC inside, the host image never grows past --disk', async () => {
    const res = await sh('dd if=/dev/zero of=/tmp/fill bs=1M count=200 2>&1; df -k / /tmp | tail -n +2')
    expect(res.stdout).toMatch(/No space left on device/)
    const img = diskLayout(paths.vmDir(vm.id)).image
    expect(statSync(img).size).toBe(vm.diskMib * 1024 * 1024)
    expect(statSync(img).blocks * 512).toBeLessThanOrEqual(vm.diskMib * 1024 * 1024)
    // Root fs writes land on the same bounded disk.
    expect((await sh('echo x > /root/more || echo FAILED')).stdout + (await sh('dd if=/dev/zero of=/root/big bs=1M count=10 2>&1')).stdout).toMatch(/No space left/)
    await sh('rm -f /tmp/fill /root/big /root/more')
    expect((await sh('echo y > /root/after && cat /root/after')).stdout).toBe('y\n')
  })

  it('network none: no interface but loopback, cannot connect anywhere', async () => {
    const res = await run(['bash', '-c', 'cat /proc/net/dev; for h in 1.1.1.1 10.0.2.2 10.0.2.3; do timeout 3 bash -c "exec 3<>/dev/tcp/$h/80" && echo CONNECTED $h; done; true'])
    expect(res.stdout).not.toMatch(/eth0|tap0|CONNECTED/)
    expect(res.stdout).toMatch(/lo:/)
  })

  it('stop keeps the files; start brings it back; status follows', async () => {
    expect((await l.status([vm], ctx)).get(vm.id)).toBe('running')
    await l.stop(vm, ctx)
    await l.stop(vm, ctx) // idempotent
    expect((await l.status([vm], ctx)).get(vm.id)).toBe('stopped')
    await l.start(vm, ctx)
    expect((await l.status([vm], ctx)).get(vm.id)).toBe('running')
    expect((await run(['cat', '/root/f.txt'])).stdout).toBe('kept\n')
    const missing = testVm(name, `debian-${hex()}`)
    expect((await l.status([missing], ctx)).get(missing.id)).toBe('missing')
  })

  it('allow_all: user-mode network in its own namespace, host 127.0.0.1 unreachable', async () => {
    const server: Server = createServer((s) => s.end('SECRET\n'))
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const port = (server.address() as {port: number}).port
    const net = testVm(name, `debian-${hex()}`, {network: 'allow_all'})
    try {
      await l.create(net, ctx)
      const res = await l.exec(net, ctx, {
        argv: ['bash', '-c', `cat /proc/net/dev; cat /etc/resolv.conf; for h in 127.0.0.1 10.0.2.2 10.0.2.3; do timeout 3 bash -c "exec 3<>/dev/tcp/$h/${port}; cat <&3" && echo CONNECTED $h; done; true`],
        timeoutSec: 30,
        output: 'capture',
      })
      expect(res.stdout).toMatch(/tap0:/)
      expect(res.stdout).toContain('nameserver 10.0.2.3')
      expect(res.stdout).not.toMatch(/SECRET|CONNECTED/)
      // The slirp4netns process exists while running and is gone after remove.
      const slirp = Number(readFileSync(join(paths.vmDir(net.id), 'slirp.pid'), 'utf8'))
      expect(existsSync(`/proc/${slirp}`)).toBe(true)
      await l.remove(net, ctx)
      const slirpAlive = () => existsSync(`/proc/${slirp}/cmdline`) && readFileSync(`/proc/${slirp}/cmdline`, 'utf8').includes('slirp4netns')
      expect(await waitUntil(() => !slirpAlive(), 10_000), `slirp4netns ${slirp} still running after remove`).toBe(true)
    } finally {
      server.close()
      await l.remove(net, ctx).catch(() => undefined)
    }
  })

  it('remove leaves nothing behind, and is idempotent', async () => {
    const vmDir = paths.vmDir(vm.id)
    await l.remove(vm, ctx)
    await l.remove(vm, ctx)
    expect(existsSync(vmDir)).toBe(false)
    expect(mountsUnder(vmDir)).toEqual([])
    expect(mountsUnder(root)).toEqual([])
    const list = await execa(name === 'gvisor' ? 'runsc' : 'runc', ['--root', paths.runtimeRoot(name), 'list', '--format', 'json'])
    expect(String(list.stdout)).not.toContain(vm.id)
    expect(await new Buildah(imageStore(root)).containerExists(containerName(vm.id))).toBe(false)
    const loops = await execa('losetup', ['-a'])
    expect(String(loops.stdout)).not.toContain(root)
    for (const c of ['memory', 'pids', 'cpu']) expect(existsSync(`/sys/fs/cgroup/${c}/agent/${vm.id}`)).toBe(false)
    expect((await l.status([vm], ctx)).get(vm.id)).toBe('missing')
  })
})
