import {execa} from 'execa'
import {existsSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {agentIn, tempState} from '../helpers/agent.js'
import {runtimeContainers, vmDirs} from '../helpers/host.js'
import {rand, removeStateDir} from './helpers.js'

// Bad input: each gives a clear error and a non-zero exit, and creates NOTHING. The state dir gets
// its own empty image store, so "no working container" is exact; the image is pinned to a local
// reference, so a check that wrongly let something through could at most try the host's loopback.
describe('bad input creates nothing', () => {
  const st = tempState('agent-sec-badinput-')
  const store = mkdtempSync(join(tmpdir(), 'agent-sec-badinput-store-'))
  const a = agentIn({...st.env, AGENT_IMAGE_STORE: store, AGENT_IMAGE_PYTHON: 'localhost/agent/python:latest', AGENT_PULL_TIMEOUT: '5'})
  const pwned = join(tmpdir(), `pwned-${rand(6)}`)
  afterAll(() => {
    rmSync(pwned, {force: true})
    rmSync(store, {recursive: true, force: true})
    removeStateDir(st.dir)
  })

  const hostile = [`$(touch ${pwned})`, `a;touch ${pwned}`, `\`touch ${pwned}\``, `a\ntouch ${pwned}`, `a && touch ${pwned} | cat`, '-rf']
  type Case = [string, string[], RegExp]
  const cases: Case[] = []
  // Validation comes before the launcher is chosen; alternate launchers anyway so both paths are covered.
  let n = 0
  const c = (what: string, args: string[], msg: RegExp) => {
    const runtime = n++ % 2 ? 'runc' : 'gvisor'
    cases.push([`${runtime}: ${what}`, ['vm', 'create', '--runtime', runtime, ...args], msg])
  }
  for (const runtime of ['gvisor', 'runc']) cases.push([`${runtime}: unknown language`, ['vm', 'create', '--runtime', runtime, '--language', 'cobol'], /unknown language "cobol"/])
  cases.push(['runc: a gVisor-only option', ['vm', 'create', '--launcher', 'runc', '--language', 'python', '--gvisor-platform', 'ptrace'], /--gvisor-platform applies to gvisor VMs, and this VM's launcher is runc/])
  cases.push(['gvisor: an unknown platform', ['vm', 'create', '--launcher', 'gvisor', '--language', 'python', '--gvisor-platform', 'kvm-please'], /Expected --gvisor-platform=kvm-please to be one of: ptrace, systrap/])
  c('--cpu 0', ['--language', 'python', '--cpu', '0'], /--cpu must be between 0\.1 and \d+/)
  c('--cpu 4096', ['--language', 'python', '--cpu', '4096'], /--cpu must be between/)
  c('--mem -1', ['--language', 'python', '--mem', '-1'], /--mem must be between 32 MiB/)
  c('--mem 99999999', ['--language', 'python', '--mem', '99999999'], /--mem must be between 32 MiB and \d+ MiB on this host \(got 99999999 MiB\)/)
  c('--disk 0', ['--language', 'python', '--disk', '0'], /--disk must be between 32 MiB/)
  c('--pids 0', ['--language', 'python', '--pids', '0'], /--pids must be between 8/)
  c('--image "a b"', ['--language', 'python', '--image', 'a b'], /invalid --image "a b"/)
  c('--image ../x', ['--language', 'python', '--image', '../x'], /invalid --image "\.\.\/x"/)
  c('--network bogus', ['--language', 'python', '--network', 'bogus'], /--network takes none, allow_all or allow:LIST \(got "bogus"\)/)
  for (const name of hostile) c(`--name ${JSON.stringify(name)}`, ['--language', 'python', '--name', name], /invalid VM name/)
  // Every hostile ref once for each of exec, stop, clean (rotating the form), to keep the run short.
  hostile.forEach((ref, i) => {
    // A positional "-rf" is read as an unknown flag: still refused with exit 2.
    const msg = ref === '-rf' ? /invalid VM id or name|Nonexistent flag|expects a value/ : /invalid VM id or name/
    cases.push([`exec --vm ${JSON.stringify(ref)}`, ['vm', 'exec', '--vm', ref, '--cmd', 'true'], msg])
    cases.push([`stop ${JSON.stringify(ref)}`, ['vm', 'stop', ...(i % 2 ? ['--vm', ref] : [ref])], msg])
    cases.push([`clean ${JSON.stringify(ref)}`, ['vm', 'clean', ...(i % 2 ? [ref] : ['--vm', ref])], msg])
  })
  cases.push(['exec --all with --vm', ['vm', 'exec', '--all', '--vm', 'x', '--cmd', 'true'], /--all=true cannot also be provided when using --vm/])
  cases.push(['clean --all with --vm', ['vm', 'clean', '--all', '--vm', 'x'], /--all=true cannot also be provided when using --vm/])
  cases.push(['stop --all with --vm', ['vm', 'stop', '--all', '--vm', 'x'], /--all=true cannot also be provided when using --vm/])

  it(`refuses ${cases.length} bad inputs with exit 2 and a clear message`, async () => {
    const failures: string[] = []
    // Independent, read-only refusals: four at a time.
    for (let i = 0; i < cases.length; i += 4) {
      await Promise.all(
        cases.slice(i, i + 4).map(async ([what, args, msg]) => {
          const r = await a(args)
          if (r.code !== 2 || !msg.test(r.stderr) || /internal error/.test(r.stderr)) failures.push(`${what}: exit ${r.code}: ${r.stderr.trim()}`)
        }),
      )
    }
    expect(failures).toEqual([])
  })

  it('a malformed --cpu value is a usage error (2), not an internal error (1)', async () => {
    for (const v of ['abc', '-1', '1e3', '1.5.5', '0x10', '', 'NaN', 'Infinity']) {
      const r = await a(['vm', 'create', '--language', 'python', '--cpu', v])
      expect(r.stderr).toMatch(/--cpu takes a number of CPUs/)
      expect(r.code, `--cpu ${v}: ${r.stderr}`).toBe(2)
    }
  })

  it('left nothing behind: no VM, no directory, no runtime or working container, and no shell ever ran', async () => {
    expect(existsSync(pwned)).toBe(false)
    const list = await a(['vm', 'list', '--all', '--json'])
    expect(list.code, list.stderr).toBe(0)
    expect(JSON.parse(list.stdout)).toEqual([])
    expect(vmDirs(st.dir)).toEqual([])
    expect(await runtimeContainers(st.dir, 'gvisor')).toEqual([])
    expect(await runtimeContainers(st.dir, 'runc')).toEqual([])
    const conf = join(store, 'storage.conf')
    if (existsSync(conf)) {
      const b = await execa('buildah', ['containers', '--json'], {env: {CONTAINERS_STORAGE_CONF: conf}, reject: false})
      expect(b.exitCode, String(b.stderr)).toBe(0)
      expect(JSON.parse(String(b.stdout).trim() || '[]') ?? []).toEqual([])
    }
  })
})
