import {execa} from 'execa'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {delimiter, dirname, join, resolve} from 'node:path'
import {Readable} from 'node:stream'
import {fileURLToPath} from 'node:url'
import {afterAll, afterEach, beforeAll, beforeEach, describe, expect, it} from 'vitest'
import {ensureStateDir, type StatePaths} from '../config/state-dir.js'
import {AgentError} from '../errors.js'
import {vmRecord, type VmRecord} from '../state/vm-record.js'
import type {ExecRequest, LaunchContext} from './launcher.js'
import {KrunvmLauncher, createArgv, guestScript, krunvmName, parseKrunvmToml, startArgv} from './krunvm.js'

const STANDIN_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../test/fixtures/krunvm-standin')
const STANDIN = join(STANDIN_DIR, 'krunvm')

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
async function gone(pid: number, ms = 2000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) if (!alive(pid)) return true
  return !alive(pid)
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
  process.env.PATH = `${STANDIN_DIR}${delimiter}${saved.PATH ?? ''}`
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
    await execa(STANDIN, ['delete', krunvmName(vm.id)], {env: {...process.env, XDG_CONFIG_HOME: paths.krunvmConfigHome}})
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
    expect(took).toBeGreaterThanOrEqual(1300)
    expect(took).toBeLessThan(8000)
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
    const r = await l.exec(vm, ctxFor(vm), req(['sleep', '30'], {signal: ac.signal}))
    expect(r).toMatchObject({exitCode: 130, timedOut: false})
    expect(Date.now() - t0).toBeLessThan(5000)
  })

  it('refuses network none before any krunvm call or directory is made', async () => {
    const l = new KrunvmLauncher()
    const vm = makeVm({network: 'none'})
    const e = await rejection(l.create(vm, ctxFor(vm)))
    expect(e.kind).toBe('usage')
    expect(e.message).toMatch(/krunvm cannot run a VM without network.*TSI/)
    expect(e.hint).toMatch(/--network allow_all.*--runtime gvisor/)
    expect(calls()).toEqual([])
    expect(existsSync(paths.vmDir(vm.id))).toBe(false)
  })

  it('runs one command at a time per VM: a concurrent exec is refused, a stale lock is taken over, stop kills the running one', async () => {
    const l = new KrunvmLauncher({killGraceMs: 300})
    const vm = makeVm()
    await l.create(vm, ctxFor(vm))
    const first = l.exec(vm, ctxFor(vm), req(['/bin/sh', '-c', 'sleep 1; echo first done']))
    await new Promise((r) => setTimeout(r, 300))
    const e = await rejection(l.exec(vm, ctxFor(vm), req(['echo', 'second'])))
    expect(e.kind).toBe('conflict')
    expect(e.message).toMatch(new RegExp(`VM ${vm.id} is busy running another command`))
    expect((await first).stdout).toBe('first done\n')

    // A lock left by a dead agent is stale.
    writeFileSync(join(paths.vmDir(vm.id), 'krunvm.lock'), JSON.stringify({pid: 2 ** 22 + 12345, token: 'x', startedAt: 'then'}))
    expect((await l.exec(vm, ctxFor(vm), req(['echo', 'ok']))).stdout).toBe('ok\n')

    // stop() kills the in-flight krunvm recorded in the lock.
    const t0 = Date.now()
    const long = l.exec(vm, ctxFor(vm), req(['sleep', '30']))
    for (let i = 0; i < 50 && !readFileSync(join(paths.vmDir(vm.id), 'krunvm.lock'), 'utf8').includes('krunvmPid'); i++) await new Promise((r) => setTimeout(r, 50))
    await new Promise((r) => setTimeout(r, 200))
    await l.stop(vm, ctxFor(vm))
    const killed = await long
    expect(killed.exitCode).toBe(128 + 15)
    expect(Date.now() - t0).toBeLessThan(5000)
    expect((await l.status([vm], ctxFor(vm))).get(vm.id)).toBe('stopped')
  })

  it('refuses guest file paths with volumes off, and keeps inline commands small and command-line safe', async () => {
    process.env.AGENT_ENABLE_GUEST_VOLUMES = '0'
    const l = new KrunvmLauncher()
    expect(l.supportsFiles).toBe(false)
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

  it('reports availability: binary, hypervisor, and the test-only hypervisor switch', async () => {
    const ok = await new KrunvmLauncher().available()
    expect(ok).toEqual({ok: true, version: 'krunvm 0.2.6'})

    delete process.env.AGENT_KRUNVM_ASSUME_HYPERVISOR
    const hv = await new KrunvmLauncher({platform: 'linux'}).available()
    if (!existsSync('/dev/kvm')) {
      expect(hv.ok).toBe(false)
      expect(hv.reason).toMatch(/\/dev\/kvm does not exist/)
      expect(hv.fix).toMatch(/enable KVM.*--runtime gvisor/)
    }

    process.env.PATH = '/nonexistent'
    const none = await new KrunvmLauncher().available()
    expect(none.ok).toBe(false)
    expect(none.reason).toMatch(/krunvm is not installed/)
    expect(none.fix).toMatch(/--runtime gvisor/)

    process.env.PATH = saved.PATH ?? ''
    process.env.AGENT_KRUNVM = STANDIN
    process.env.AGENT_KRUNVM_ASSUME_HYPERVISOR = '1'
    expect((await new KrunvmLauncher().available()).ok).toBe(true)
    process.env.AGENT_KRUNVM = '/nonexistent/krunvm'
    expect((await new KrunvmLauncher().available()).reason).toMatch(/AGENT_KRUNVM=.* is not an executable/)
  })

  it('reads AGENT_ENABLE_GUEST_VOLUMES: 1/0/true/false, default off only on macOS', () => {
    delete process.env.AGENT_ENABLE_GUEST_VOLUMES
    expect(new KrunvmLauncher({platform: 'linux'}).supportsFiles).toBe(true)
    expect(new KrunvmLauncher({platform: 'darwin'}).supportsFiles).toBe(false)
    process.env.AGENT_ENABLE_GUEST_VOLUMES = 'true'
    expect(new KrunvmLauncher({platform: 'darwin'}).supportsFiles).toBe(true)
    process.env.AGENT_ENABLE_GUEST_VOLUMES = 'false'
    expect(new KrunvmLauncher({platform: 'linux'}).supportsFiles).toBe(false)
    process.env.AGENT_ENABLE_GUEST_VOLUMES = 'maybe'
    expect(() => new KrunvmLauncher().volumesEnabled()).toThrow(/must be 1, 0, true or false/)
  })
})

describe('argv and script builders', () => {
  it('builds create/start argv the way krunvm parses them', () => {
    expect(createArgv({image: 'img', name: 'agent-x', cpus: 0.5, memMib: 256, volumes: [['/h/in', '/in']], ports: [[8080, 80]]})).toEqual([
      'create', 'img', '--name', 'agent-x', '--cpus', '1', '--mem', '256', '--volume', '/h/in:/in', '--port', '8080:80',
    ])
    expect(() => createArgv({image: 'img', name: 'a', cpus: 1, memMib: 1, volumes: [['/h:x/in', '/in']]})).toThrow(/':' in paths/)
    expect(() => createArgv({image: 'img', name: 'a', cpus: 1, memMib: 1, volumes: [['/h/in', '/a/b']]})).toThrow(/single top-level/)
    expect(() => createArgv({image: 'img', name: 'a', cpus: 1, memMib: 1, ports: [[70000, 80]]})).toThrow(/invalid port/)
    expect(startArgv('vm', ['/bin/sh', '-c', 'x'], ['A=1'])).toEqual(['start', '--env', 'A=1', 'vm', '/bin/sh', '--', '-c', 'x'])
    expect(() => startArgv('vm', ['-x'])).toThrow(/cannot start with '-'/)
  })

  it('keeps every word intact in an inline script, with nothing the kernel command line cannot carry', async () => {
    const weird = ['say "hi"', 'line1\nline2\n\n', "it's", '100%', 'back\\slash', 'tab\there', 'ü ✓ 🚀', '*', '$HOME', '  spaced  ', '', '-n']
    const script = guestScript({argv: ['printf', '%s|', ...weird], env: {Q: 'v "1"\n', PLAIN: 'p'}, workdir: '/tmp', inline: true})
    expect(script).not.toMatch(/["\x00-\x1f\x7f-\uffff]/)
    for (const shell of ['/bin/sh', '/bin/bash', '/bin/dash'].filter((s) => existsSync(s))) {
      const r = await execa(shell, ['-c', `${script.replace(/exec 'printf'/, "printf '[%s]' \"$Q$PLAIN\" \"$(pwd)\"; exec 'printf'")}`], {stripFinalNewline: false})
      expect(r.stdout, shell).toBe(`[v "1"\np][/tmp]${weird.join('|')}|`)
    }
  })

  it('quotes every word of the guest script for sh', async () => {
    const weird = ["it's", '$(id)', '`id`', '"q"', 'a b', '\\n', '*', '-n', '']
    const script = guestScript({argv: ['printf', '%s|', ...weird], env: {X: "v'$1"}, workdir: "/tmp"})
    const r = await execa('/bin/sh', ['-c', script])
    expect(r.stdout).toBe(`${weird.join('|')}|`)
    expect(() => guestScript({argv: ['x'], env: {'BAD-NAME': '1'}})).toThrow(/invalid environment variable name/)
  })
})

describe('the krunvm stand-in itself', () => {
  let xdg: string
  let host: string
  const run = (args: string[], env: Record<string, string> = {}) =>
    execa(STANDIN, args, {reject: false, stripFinalNewline: false, env: {...process.env, XDG_CONFIG_HOME: xdg, ...env}, stdin: 'ignore'})
  beforeEach(() => {
    xdg = mkdtempSync(join(root, 'xdg-'))
    host = mkdtempSync(join(root, 'host-'))
  })

  it('rejects what krunvm 0.2.6 rejects (clap errors: stderr, exit 2)', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['create', 'img', '-p', '8080:80'], /unexpected argument '-p' found/],
      [['create', 'img', '--volume', `${host}:/a/b`], /only single direct root children are supported as guest_path/],
      [['create', 'img', '--volume', '/x:/a/b'], /host_path does not exists/],
      [['create', 'img', '--volume', `${host}/missing:/in`], /host_path does not exists/],
      [['create', 'img', '--volume', `relative:/in`], /host_path is not an absolute path/],
      [['create', 'img', '--volume', `${host}:in`], /guest_path is not an absolute path/],
      [['create', 'img', '--volume', `${host}:/in:ro`], /Too many ':' separators/],
      [['create', 'img', '--port', '8080'], /invalid value '8080' for '--port <PORTS>'/],
      [['create', 'img', '--port', '70000:80'], /Invalid host port/],
      [['create', 'img', '--cpus', '1.5'], /invalid value '1.5' for '--cpus <CPUS>'/],
      [['create', 'img', '--bogus'], /unexpected argument '--bogus' found/],
      [['create', 'img', '--name', 'a', '--name', 'b'], /cannot be used multiple times/],
      [['create'], /required arguments were not provided/],
      [['start', 'vm', '/bin/sh', '-c', 'echo hi'], /unexpected argument '-c' found/],
      [['start', 'vm', 'echo', '--version'], /unexpected argument '--version' found/],
      [['frobnicate'], /unrecognized subcommand/],
    ]
    const results = await Promise.all(cases.map(([args]) => run(args)))
    cases.forEach(([args, msg], i) => {
      const r = results[i]
      expect({args, code: r.exitCode}).toEqual({args, code: 2})
      expect(r.stderr).toMatch(msg)
      expect(r.stdout).toBe('')
    })
  })

  it('keeps state in $XDG_CONFIG_HOME/krunvm/krunvm.toml and reports its own errors on stdout with 255', async () => {
    mkdirSync(join(host, 'in'))
    expect((await run(['create', 'img:1', '--name', 'vm1', '--volume', `${host}/in:/in`, '--port', '8080:80'])).stdout).toBe('microVM created with name: vm1\n')
    const toml = readFileSync(join(xdg, 'krunvm', 'krunvm.toml'), 'utf8')
    expect(toml).toMatch(/\[vmconfig_map\.vm1\]\nname = "vm1"\ncpus = 2\nmem = 1024\n/)
    expect(parseKrunvmToml(toml).get('vm1')!.mappedVolumes).toEqual({[`${host}/in`]: '/in'})

    const dup = await run(['create', 'img', '--name', 'vm1'])
    expect([dup.exitCode, dup.stdout]).toEqual([255, 'A VM with this name already exists\n'])
    const unknown = await run(['start', 'nope', '/bin/true'])
    expect([unknown.exitCode, unknown.stdout]).toEqual([255, 'No VM found with name nope\n'])
    expect((await run(['list'])).stdout).toMatch(/^\nvm1\n CPUs: 2\n/)

    const ok = await run(['start', '--env', 'A=1', 'vm1', '/bin/sh', '--', '-c', 'echo $A $HOSTNAME; exit 3'])
    expect([ok.exitCode, ok.stdout]).toEqual([3, '1 vm1\n'])

    const bg = run(['start', 'vm1', 'sleep', '--', '1'])
    await new Promise((r) => setTimeout(r, 300))
    const locked = await run(['start', 'vm1', '/bin/true'])
    expect([locked.exitCode, locked.stdout]).toEqual([255, "Couldn't acquire lock file. Is another instance of this VM already running?\n"])
    expect((await bg).exitCode).toBe(0)

    const tooLong = await run(['start', 'vm1', '/bin/sh', '--', '-c', `echo ${'x'.repeat(3000)}`])
    expect([tooLong.exitCode, tooLong.stdout]).toEqual([255, 'Error starting VM\n'])

    const cv = await run(['changevm', 'vm1', '--cpus', '9', '--mem', '20000'])
    expect(cv.stdout).toMatch(/maximum number of CPUs supported is 8[\s\S]*maximum amount of RAM supported is 16384 MiB/)
    expect((await run(['delete', 'vm1'])).exitCode).toBe(0)
    const gone = await run(['delete', 'vm1'])
    expect([gone.exitCode, gone.stdout]).toEqual([255, 'No VM found with that name\n'])
    expect((await run(['list'])).stdout).toBe('No microVMs found\n')
    expect((await run(['list'], {XDG_CONFIG_HOME: ''})).exitCode).toBe(255) // refuses the user's ~/.config
  })
})
