import {existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {delimiter, dirname, join, resolve} from 'node:path'
import {Readable} from 'node:stream'
import {fileURLToPath} from 'node:url'
import {afterAll, afterEach, beforeAll, beforeEach, describe, expect, it} from 'vitest'
import {ensureStateDir, type StatePaths} from '../../config/state-dir.js'
import {AgentError} from '../../errors.js'
import {vmRecord, type VmRecord} from '../../state/vm-record.js'
import {tryRun} from '../../system/index.js'
import type {ExecRequest, LaunchContext} from '../launcher.js'
import {krunvmName} from './argv.js'
import {KrunvmLauncher} from './launcher.js'
import {parseKrunvmToml} from './state-file.js'

const STANDIN_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../../test/fixtures/krunvm-standin')
const STANDIN = join(STANDIN_DIR, 'krunvm')
/** krunvm counts as usable only with buildah on PATH: a placeholder, so no real buildah is needed (or run). */
const BUILDAH_PLACEHOLDER_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../../test/fixtures/buildah-placeholder')

interface Call {
  pid: number
  argv: string[]
  env: Record<string, string>
  hostDirs: Record<string, boolean>
}

const saved = {...process.env}
let root: string
let paths: StatePaths
let logFile: string

function calls(): Call[] {
  if (!existsSync(logFile)) return []
  return readFileSync(logFile, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Call)
}
function argvs(): string[][] {
  return calls().map((c) => c.argv)
}
function clearLog(): void {
  rmSync(logFile, {force: true})
}
/** Alive and not a zombie (a killed guest may wait a moment for its new parent to reap it). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return true
  }
}
/** Waits for a process to end; generous, so it holds on a loaded host. */
async function gone(pid: number, ms = 15_000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) if (!alive(pid)) return true
  return !alive(pid)
}

/** Polls until `check` holds (or 30 s pass): never a fixed sleep that a loaded host can outlast. */
async function waitFor(check: () => boolean, ms = 30_000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) if (check()) return true
  return check()
}

let seq = 0
function makeVm(over: Partial<VmRecord> = {}): VmRecord {
  seq += 1
  return vmRecord({
    id: `python-${(0xabc000 + seq).toString(16).padStart(8, '0')}`,
    plugin: '@agent/runtime-python@0.1.0',
    image: 'docker.io/library/python:3.12-slim',
    imageSource: 'flag',
    launcher: 'krunvm',
    cpus: 1.5,
    memoryMib: 512,
    network: 'allow_all',
    ownerPid: process.pid,
    ...over,
  })
}
function ctxFor(vm: VmRecord): LaunchContext {
  return {paths, guestDir: '/nonexistent-guest-dir', env: {RUNTIME_VAR: 'from-runtime'}, persistDir: vm.persist ? paths.persistDir(vm.id) : undefined}
}
function req(argv: string[], over: Partial<ExecRequest> = {}): ExecRequest {
  return {argv, timeoutSec: 30, output: 'capture', ...over}
}
async function rejection(p: Promise<unknown>): Promise<AgentError> {
  try {
    await p
  } catch (err) {
    expect(err).toBeInstanceOf(AgentError)
    return err as AgentError
  }
  throw new Error('expected a rejection')
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'agent-krunvm-test-'))
  logFile = join(root, 'standin.log')
})
afterAll(() => {
  rmSync(root, {recursive: true, force: true})
})
beforeEach(() => {
  process.env = {...saved}
  const state = mkdtempSync(join(root, 'state-'))
  process.env.AGENT_STATE_DIR = state // isolates buildah storage: imageStore() gives CONTAINERS_* env
  delete process.env.AGENT_IMAGE_STORE
  delete process.env.AGENT_KRUNVM
  process.env.PATH = [STANDIN_DIR, BUILDAH_PLACEHOLDER_DIR, saved.PATH ?? ''].join(delimiter)
  process.env.AGENT_KRUNVM_ASSUME_HYPERVISOR = '1'
  process.env.AGENT_ENABLE_GUEST_VOLUMES = '1'
  process.env.KRUNVM_STANDIN_LOG = logFile
  if (process.getuid?.() !== 0) process.env.BUILDAH_ISOLATION = 'chroot'
  paths = ensureStateDir(state)
  clearLog()
})
afterEach(() => {
  process.env = {...saved}
})

describe('krunvm launcher against the krunvm 0.2.6 stand-in', () => {
  it('drives create -> exec -> stop -> start -> remove with exact krunvm argv', async () => {
    const l = new KrunvmLauncher({killGraceMs: 300})
    const vm = makeVm({persist: true})
    const ctx = ctxFor(vm)
    const name = krunvmName(vm.id)
    expect(existsSync(paths.inDir(vm.id))).toBe(false)

    const refs = await l.create(vm, ctx)
    expect(refs).toEqual({containerRef: name, rootfsRef: null, bundleRef: null})
    // The stand-in rejects a --volume whose host dir is missing, so success proves the dirs came first.
    expect(argvs()).toEqual([
      ['create', vm.image, '--name', name, '--cpus', '2', '--mem', '512',
        '--volume', `${paths.inDir(vm.id)}:/in`, '--volume', `${paths.outDir(vm.id)}:/out`, '--volume', `${paths.persistDir(vm.id)}:/persist`],
    ])
    expect(calls()[0].hostDirs).toEqual({[paths.inDir(vm.id)]: true, [paths.outDir(vm.id)]: true, [paths.persistDir(vm.id)]: true})
    const toml = readFileSync(join(paths.krunvmConfigHome, 'krunvm', 'krunvm.toml'), 'utf8')
    expect([...parseKrunvmToml(toml).keys()]).toEqual([name])
    expect(parseKrunvmToml(toml).get(name)!.mappedVolumes).toEqual({
      [paths.inDir(vm.id)]: '/in', [paths.outDir(vm.id)]: '/out', [paths.persistDir(vm.id)]: '/persist',
    })
    expect((await l.status([vm], ctx)).get(vm.id)).toBe('running')

    clearLog()
    const chunks: string[] = []
    const echo = await l.exec(vm, ctx, req(['echo', 'hello', 'world'], {onOutput: (s, b) => chunks.push(`${s}:${b}`)}))
    expect(echo).toMatchObject({exitCode: 0, timedOut: false, oom: false, stdout: 'hello world\n', stderr: '', stdoutTruncated: false})
    expect(chunks.join('')).toBe('stdout:hello world\n')

    const envWd = await l.exec(vm, ctx, req(['/bin/sh', '-c', 'echo "$RUNTIME_VAR $FOO $HOSTNAME"; pwd; echo made > /out/result.txt'], {env: {FOO: 'it\'s "quoted"'}, workdir: '/out'}))
    expect(envWd.exitCode).toBe(0)
    expect(envWd.stdout).toBe(`from-runtime it's "quoted" ${name}\n${paths.outDir(vm.id)}\n`)
    expect(readFileSync(join(paths.outDir(vm.id), 'result.txt'), 'utf8')).toBe('made\n')

    const seven = await l.exec(vm, ctx, req(['/bin/sh', '-c', 'echo bye >&2; exit 7']))
    expect(seven).toMatchObject({exitCode: 7, stderr: 'bye\n'})

    const dashes = await l.exec(vm, ctx, req(['/bin/sh', '-c', 'printf "%s|" "$@"', 'sh', '-c', '--help', '-p', '8080:80']))
    expect(dashes.stdout).toBe('-c|--help|-p|8080:80|')

    const long = 'x'.repeat(5000) + "'\"$(touch /tmp/never)`\n"
    const big = await l.exec(vm, ctx, req(['printf', '%s', long]))
    expect(big.stdout).toBe(long)

    const g255 = await l.exec(vm, ctx, req(['/bin/sh', '-c', 'exit 255']))
    expect(g255.exitCode).toBe(255) // the guest's own 255 is not mistaken for a krunvm error

    const piped = await l.exec(vm, ctx, req(['cat'], {stdin: Readable.from([Buffer.from('from stdin')])}))
    expect(piped.stdout).toBe('from stdin')

    // Code reaches the guest as a file in /in; the kernel command line only ever holds its path.
    const n = [1, 2, 3, 4, 5, 6, 7]
    expect(argvs()).toEqual(n.map((i) => ['start', name, '/bin/sh', '--', `/in/.agent/cmd-${i}.sh`]))
    expect(Math.max(...calls().flatMap((c) => c.argv.map((a) => a.length)))).toBeLessThan(100)
    expect(readdirSync(join(paths.inDir(vm.id), '.agent'))).toEqual([]) // scripts and markers cleaned up
    expect(existsSync(join(paths.vmDir(vm.id), 'krunvm.lock'))).toBe(false)

    clearLog()
    await l.stop(vm, ctx)
    expect((await l.status([vm], ctx)).get(vm.id)).toBe('stopped')
    await l.start(vm, ctx)
    expect((await l.status([vm], ctx)).get(vm.id)).toBe('running')
    expect(argvs()).toEqual([]) // krunvm VMs only exist while a command runs: nothing to boot or halt

    await l.remove(vm, ctx)
    expect(argvs()).toEqual([['delete', name]])
    expect((await l.status([vm], ctx)).get(vm.id)).toBe('missing')
    await l.remove(vm, ctx) // idempotent, and no second krunvm call
    expect(argvs()).toEqual([['delete', name]])
    await expect(l.start(vm, ctx)).rejects.toMatchObject({kind: 'not_found'})
  })

  it('gives every krunvm call its own XDG_CONFIG_HOME and agent\'s buildah storage', async () => {
    const l = new KrunvmLauncher()
    const vm = makeVm()
    await l.create(vm, ctxFor(vm))
    await l.exec(vm, ctxFor(vm), req(['true']))
    await l.remove(vm, ctxFor(vm))
    const cs = calls()
    expect(cs.map((c) => c.argv[0])).toEqual(['create', 'start', 'delete'])
    const storage = join(paths.root, 'containers')
    for (const c of cs) {
      expect(c.env.XDG_CONFIG_HOME).toBe(paths.krunvmConfigHome)
      expect(c.env.CONTAINERS_STORAGE_CONF).toBe(join(storage, 'storage.conf'))
      expect(c.env.CONTAINERS_REGISTRIES_CONF).toBe(join(storage, 'registries.conf'))
      expect(c.env.CONTAINERS_POLICY).toBe(join(storage, 'policy.json'))
    }
    expect(existsSync(join(paths.krunvmConfigHome, 'krunvm', 'krunvm.toml'))).toBe(true)
  })

  it('turns krunvm\'s own errors (255 on stdout, 101 panics) into agent errors carrying krunvm\'s text', async () => {
    const l = new KrunvmLauncher()
    const vm = makeVm()
    process.env.KRUNVM_STANDIN_FAIL = 'create'
    const ce = await rejection(l.create(vm, ctxFor(vm)))
    expect(ce.kind).toBe('unavailable')
    expect(ce.message).toMatch(/buildah returned an error: stand-in failure requested/)

    delete process.env.KRUNVM_STANDIN_FAIL
    await l.create(vm, ctxFor(vm))
    process.env.KRUNVM_STANDIN_FAIL = 'start'
    const se = await rejection(l.exec(vm, ctxFor(vm), req(['echo', 'never'])))
    expect(se.kind).toBe('unavailable')
    expect(se.exitCode).toBe(5)
    expect(se.message).toMatch(/krunvm start agent-python-\w+ failed \(krunvm exit 255\): Error starting VM/)

    process.env.KRUNVM_STANDIN_FAIL = 'start:panic'
    const pe = await rejection(l.exec(vm, ctxFor(vm), req(['echo', 'never'])))
    expect(pe.kind).toBe('internal')
    expect(pe.message).toMatch(/krunvm crashed \(exit 101\).*Error mounting container/)
    delete process.env.KRUNVM_STANDIN_FAIL

    // A VM deleted behind agent's back: krunvm says so, and agent says which VM.
    expect((await tryRun(STANDIN, ['delete', krunvmName(vm.id)], {env: {XDG_CONFIG_HOME: paths.krunvmConfigHome}})).exitCode).toBe(0)
    await expect(l.exec(vm, ctxFor(vm), req(['true']))).rejects.toMatchObject({kind: 'not_found'})
  })

  it('kills krunvm on timeout (SIGTERM, then SIGKILL after the grace time) and reports 124', async () => {
    const l = new KrunvmLauncher({killGraceMs: 400})
    const vm = makeVm()
    await l.create(vm, ctxFor(vm))
    clearLog()
    process.env.KRUNVM_STANDIN_IGNORE_SIGTERM = '1' // only SIGKILL ends it
    const t0 = Date.now()
    const r = await l.exec(vm, ctxFor(vm), req(['/bin/sh', '-c', 'trap "" TERM; echo $$ > /out/guest.pid; echo started; while :; do sleep 0.1; done'], {timeoutSec: 1}))
    const took = Date.now() - t0
    expect(r).toMatchObject({exitCode: 124, timedOut: true, stdout: 'started\n'})
    expect(took).toBeGreaterThanOrEqual(1300) // the timeout, then the grace time: never sooner
    expect(took).toBeLessThan(60_000) // the command alone never ends
    const krunvmPid = calls()[0].pid
    const guestPid = Number(readFileSync(join(paths.outDir(vm.id), 'guest.pid'), 'utf8'))
    expect(await gone(krunvmPid)).toBe(true)
    expect(await gone(guestPid)).toBe(true)
    delete process.env.KRUNVM_STANDIN_IGNORE_SIGTERM
    // The lock went with it: the VM takes the next command.
    expect((await l.exec(vm, ctxFor(vm), req(['echo', 'again']))).stdout).toBe('again\n')
  })

  it('caps captured output and ends the command on abort (Ctrl-C) with 130', async () => {
    const l = new KrunvmLauncher({killGraceMs: 300})
    const vm = makeVm()
    await l.create(vm, ctxFor(vm))
    const capped = await l.exec(vm, ctxFor(vm), req(['printf', '%0100d', '0'], {maxCaptureBytes: 10}))
    expect(capped).toMatchObject({exitCode: 0, stdout: '0000000000', stdoutTruncated: true})
    const ac = new AbortController()
    setTimeout(() => ac.abort(), 300)
    const t0 = Date.now()
    const r = await l.exec(vm, ctxFor(vm), req(['sleep', '600'], {signal: ac.signal}))
    expect(r).toMatchObject({exitCode: 130, timedOut: false})
    expect(Date.now() - t0).toBeLessThan(60_000) // the command alone would take 600 s
  })

  it('refuses network none before any krunvm call or directory is made', async () => {
    const l = new KrunvmLauncher()
    const vm = makeVm({network: 'none'})
    const e = await rejection(l.create(vm, ctxFor(vm)))
    expect(e.kind).toBe('usage')
    expect(e.message).toMatch(/krunvm cannot run a VM without network.*TSI/)
    expect(e.hint).toMatch(/--network allow_all.*--launcher gvisor/)
    // The same words as the capability the VM service checks first.
    expect(l.capabilities.networkNone).toEqual({why: e.message, hint: e.hint})
    expect(calls()).toEqual([])
    expect(existsSync(paths.vmDir(vm.id))).toBe(false)
  })

  it('runs one command at a time per VM: a concurrent exec is refused, a stale lock is taken over, stop kills the running one', async () => {
    const l = new KrunvmLauncher({killGraceMs: 300})
    const vm = makeVm()
    await l.create(vm, ctxFor(vm))
    // The first command runs until the test lets it finish: no race with a loaded host.
    const first = l.exec(vm, ctxFor(vm), req(['/bin/sh', '-c', 'touch /out/first.started; while [ ! -e /out/first.go ]; do sleep 0.05; done; echo first done']))
    expect(await waitFor(() => existsSync(join(paths.outDir(vm.id), 'first.started'))), 'the first command never started').toBe(true)
    const e = await rejection(l.exec(vm, ctxFor(vm), req(['echo', 'second'])))
    expect(e.kind).toBe('conflict')
    expect(e.message).toMatch(new RegExp(`VM ${vm.id} is busy running another command`))
    writeFileSync(join(paths.outDir(vm.id), 'first.go'), '')
    expect((await first).stdout).toBe('first done\n')

    // A lock left by a dead agent is stale.
    writeFileSync(join(paths.vmDir(vm.id), 'krunvm.lock'), JSON.stringify({pid: 2 ** 22 + 12345, token: 'x', startedAt: 'then'}))
    expect((await l.exec(vm, ctxFor(vm), req(['echo', 'ok']))).stdout).toBe('ok\n')

    // stop() kills the in-flight krunvm recorded in the lock.
    const t0 = Date.now()
    const long = l.exec(vm, ctxFor(vm), req(['sleep', '600']))
    const lockHasPid = () => existsSync(join(paths.vmDir(vm.id), 'krunvm.lock')) && readFileSync(join(paths.vmDir(vm.id), 'krunvm.lock'), 'utf8').includes('krunvmPid')
    expect(await waitFor(lockHasPid), 'the lock never recorded the krunvm pid').toBe(true)
    await new Promise((r) => setTimeout(r, 200))
    await l.stop(vm, ctxFor(vm))
    const killed = await long
    expect(killed.exitCode).toBe(128 + 15)
    expect(Date.now() - t0).toBeLessThan(60_000) // the command alone would take 600 s
    expect((await l.status([vm], ctxFor(vm))).get(vm.id)).toBe('stopped')
  })

  it('refuses guest file paths with volumes off, and keeps inline commands small and command-line safe', async () => {
    process.env.AGENT_ENABLE_GUEST_VOLUMES = '0'
    const l = new KrunvmLauncher()
    expect(l.capabilities.files).toMatchObject({why: expect.stringMatching(/guest volumes are off/), hint: expect.stringMatching(/AGENT_ENABLE_GUEST_VOLUMES=1/)})
    const vm = makeVm({persist: true})
    const ctx = ctxFor(vm)
    await l.create(vm, ctx)
    const name = krunvmName(vm.id)
    expect(argvs()).toEqual([['create', vm.image, '--name', name, '--cpus', '2', '--mem', '512']])

    clearLog()
    const r = await l.exec(vm, ctx, req(['/bin/sh', '-c', 'echo hi $RUNTIME_VAR']))
    expect(r).toMatchObject({exitCode: 0, stdout: 'hi from-runtime\n'})
    expect(argvs()).toEqual([['start', name, '/bin/sh', '--', '-c', "export RUNTIME_VAR='from-runtime'; exec '/bin/sh' '-c' 'echo hi $RUNTIME_VAR'"]])
    expect((await l.exec(vm, ctx, req(['/bin/sh', '-c', 'exit 255']))).exitCode).toBe(255)

    clearLog()
    const fe = await rejection(l.exec(vm, ctx, req(['python3', '/in/main.py'])))
    expect(fe.kind).toBe('unavailable')
    expect(fe.message).toMatch(/has no guest volumes/)
    expect(fe.hint).toMatch(/AGENT_ENABLE_GUEST_VOLUMES=1/)
    await expect(l.exec(vm, ctx, req(['ls'], {workdir: '/out'}))).rejects.toMatchObject({kind: 'unavailable'})
    const le = await rejection(l.exec(vm, ctx, req(['printf', 'x'.repeat(4096)])))
    expect(le.kind).toBe('usage')
    expect(le.message).toMatch(/too long .* kernel command line/)
    expect(calls()).toEqual([])

    // Quotes, newlines and non-ASCII cannot ride the kernel command line as they are (the stand-in
    // fails any such start): they are rebuilt in the guest with printf escapes instead.
    const hello = await l.exec(vm, ctx, req(['/bin/sh', '-c', 'echo "hello from $X"\necho \'b\' ü %s "*"'], {env: {X: 'a "b"\n'}, workdir: '/tmp'}))
    expect(hello).toMatchObject({exitCode: 0, stdout: 'hello from a "b"\n\nb ü %s *\n'})
    const sent = calls().at(-1)!.argv
    expect(sent.slice(0, 5)).toEqual(['start', name, '/bin/sh', '--', '-c'])
    expect(sent[5]).not.toMatch(/["\n\u0080-\uffff]/)

    process.env.KRUNVM_STANDIN_FAIL = 'start'
    await expect(l.exec(vm, ctx, req(['true']))).rejects.toMatchObject({kind: 'unavailable', message: expect.stringMatching(/Error starting VM/)})
  })

  it('never follows a symlink the guest plants at /in/.agent', async () => {
    const l = new KrunvmLauncher()
    const vm = makeVm()
    await l.create(vm, ctxFor(vm))
    const victim = join(root, `victim-${vm.id}`)
    mkdirSync(victim)
    await l.exec(vm, ctxFor(vm), req(['rm', '-rf', '/in/.agent']))
    await l.exec(vm, ctxFor(vm), req(['ln', '-s', victim, '/in/.agent']))
    const r = await l.exec(vm, ctxFor(vm), req(['echo', 'safe']))
    expect(r.stdout).toBe('safe\n')
    expect(readdirSync(victim)).toEqual([])
  })

  it('on macOS, uses only the image store scripts/macos/setup.sh wrote, and never rewrites it', async () => {
    process.env.HOME = mkdtempSync(join(root, 'home-'))
    const l = new KrunvmLauncher({platform: 'darwin', killGraceMs: 300})
    const vm = makeVm()
    const err = await rejection(l.create(vm, ctxFor(vm)))
    expect(err.kind).toBe('unavailable')
    expect(err.message).toMatch(/image store .* is not set up .*on macOS agent does not write it itself/)
    expect(err.hint).toMatch(/scripts\/macos\/setup\.sh/)
    expect(argvs()).toEqual([])
    const store = join(paths.root, 'containers')
    expect(existsSync(store)).toBe(false)

    // What the set-up script writes: vfs, the graph root on krunvm's volume.
    mkdirSync(store)
    const conf = `[storage]\ndriver = "vfs"\ngraphroot = "${root}/Volumes/krunvm/root"\nrunroot = "${root}/Volumes/krunvm/runroot"\n`
    writeFileSync(join(store, 'storage.conf'), conf)
    writeFileSync(join(store, 'policy.json'), '{"default": [{"type": "insecureAcceptAnything"}]}\n')
    writeFileSync(join(store, 'registries.conf'), '# set-up\n')
    await l.create(vm, ctxFor(vm))
    expect(calls()[0].env.CONTAINERS_STORAGE_CONF).toBe(join(store, 'storage.conf'))
    expect(readFileSync(join(store, 'storage.conf'), 'utf8')).toBe(conf)
    expect(readdirSync(store).sort()).toEqual(['policy.json', 'registries.conf', 'storage.conf'])
    await l.remove(vm, ctxFor(vm))
  })
})
