import {spawn} from 'node:child_process'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {pinProcess, processEnded, processStat, type RunResult} from '../system/index.js'
import {containerState, endContainer, hasRuntimeState, listContainers, listFromFiles, type RuntimeCall, sandboxProcesses, stateFromFiles} from './oci-state.js'

let root: string
const kids: Array<ReturnType<typeof spawn>> = []
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'agent-ocistate-'))
})
afterEach(() => {
  for (const k of kids.splice(0)) k.kill('SIGKILL')
  rmSync(root, {recursive: true, force: true})
})

const result = (exitCode: number, stdout = ''): RunResult => ({exitCode, stdout, stderr: '', all: stdout, timedOut: false, missing: false})

/** A real process standing in for a sandbox; `ignoreTerm` makes it need SIGKILL. */
function sandbox(): number {
  const k = spawn('sleep', ['30'], {stdio: 'ignore'})
  kids.push(k)
  return k.pid!
}

/** A shell that ignores SIGTERM, once its trap is set. */
async function stubbornSandbox(): Promise<number> {
  const k = spawn('sh', ['-c', 'trap "" TERM; echo ready; while :; do sleep 0.05; done'], {stdio: ['ignore', 'pipe', 'ignore']})
  kids.push(k)
  await new Promise((r) => k.stdout!.once('data', r))
  return k.pid!
}

/** A runtime stand-in: `kill NAME SIG` signals the sandbox process; every call is recorded. */
function fakeRuntime(pid: number): {call: RuntimeCall; calls: string[]} {
  const calls: string[] = []
  const call: RuntimeCall = async (args) => {
    calls.push(args.join(' '))
    if (args[0] === 'kill') process.kill(pid, args[2] === 'KILL' ? 'SIGKILL' : 'SIGTERM')
    return result(0)
  }
  return {call, calls}
}

describe('hasRuntimeState', () => {
  it('sees runc and runsc state entries naming the container, and nothing else', () => {
    expect(hasRuntimeState(join(root, 'none'), 'agent-python-1234abcd')).toBe(false)
    expect(hasRuntimeState(root, 'agent-python-1234abcd')).toBe(false)
    writeFileSync(join(root, 'agent-python-99999999_sandbox:agent-python-99999999.state'), '{}')
    expect(hasRuntimeState(root, 'agent-python-1234abcd')).toBe(false)
    mkdirSync(join(root, 'agent-python-1234abcd'))
    expect(hasRuntimeState(root, 'agent-python-1234abcd')).toBe(true)
    writeFileSync(join(root, 'agent-python-5678abcd_sandbox:agent-python-5678abcd.lock'), '')
    expect(hasRuntimeState(root, 'agent-python-5678abcd')).toBe(true)
  })
})

describe('containerState and listContainers', () => {
  it('reads status and pid; a runtime that does not know the container says undefined', async () => {
    expect(await containerState(async () => result(0, '{"id":"x","status":"running","pid":42}'), 'x')).toEqual({status: 'running', pid: 42})
    expect(await containerState(async () => result(0, '{"status":"stopped","pid":0}'), 'x')).toEqual({status: 'stopped', pid: undefined})
    expect(await containerState(async () => result(0, 'not json'), 'x')).toEqual({status: 'unknown'})
    expect(await containerState(async () => result(1), 'x')).toBeUndefined()
  })

  it('lists in one call; an unanswered list has no rows', async () => {
    expect((await listContainers(async () => result(0, '[{"id":"a","status":"running"}]'))).rows).toEqual([{id: 'a', status: 'running'}])
    expect((await listContainers(async () => result(0, 'null'))).rows).toEqual([])
    expect((await listContainers(async () => result(1))).rows).toBeUndefined()
  })
})

describe('sandboxProcesses', () => {
  it('adds runsc\'s gofer from its state file, pinned by start time', () => {
    const a = sandbox()
    const b = sandbox()
    writeFileSync(join(root, 'agent-x_sandbox:agent-x.state'), JSON.stringify({goferPid: b, sandbox: {pid: a}}))
    expect(sandboxProcesses(root, 'agent-x', a).map((p) => p.pid).sort()).toEqual([a, b].sort())
    expect(sandboxProcesses(root, 'agent-y', a).map((p) => p.pid)).toEqual([a])
    expect(sandboxProcesses(root, 'agent-y', undefined)).toEqual([])
  })
})

describe('processEnded', () => {
  it('takes a zombie for ended: it holds nothing but its pid', async () => {
    // The inner sleep exits and is never collected: `exec sleep` does not wait for children.
    const k = spawn('sh', ['-c', 'sleep 0.1 & echo $!; exec sleep 30'], {stdio: ['ignore', 'pipe', 'ignore']})
    kids.push(k)
    const pid = Number(await new Promise<string>((r) => k.stdout!.once('data', (b: Buffer) => r(b.toString()))))
    const p = pinProcess(pid)!
    expect(processEnded(p)).toBe(false)
    await new Promise((r) => setTimeout(r, 400))
    expect(processEnded(p)).toBe(true)
    expect(processEnded({pid: process.pid, start: 'another start time'})).toBe(true)
  })
})

describe('endContainer', () => {
  it('SIGTERM; the sandbox ends within the grace: no SIGKILL', async () => {
    const pid = sandbox()
    const rt = fakeRuntime(pid)
    expect(await endContainer(rt.call, root, 'agent-x', {status: 'running', pid}, 5_000)).toBe(true)
    expect(rt.calls).toEqual(['kill agent-x TERM'])
    expect(processEnded(pinProcess(pid) ?? {pid, start: ''})).toBe(true)
  })

  it('SIGKILL after the grace when SIGTERM is ignored', async () => {
    const pid = await stubbornSandbox()
    const rt = fakeRuntime(pid)
    expect(await endContainer(rt.call, root, 'agent-x', {status: 'running', pid}, 300)).toBe(true)
    expect(rt.calls).toEqual(['kill agent-x TERM', 'kill agent-x KILL'])
  })
})

describe('stateFromFiles (what `state` would say, from the runtime\'s own files)', () => {
  const runcState = (name: string, pid: number, start: string) => {
    mkdirSync(join(root, name), {recursive: true})
    writeFileSync(join(root, name, 'state.json'), JSON.stringify({id: name, init_process_pid: pid, init_process_start: start}))
  }
  const never = () => false

  it('runc: running while the init process lives (pinned by its start time), created with exec.fifo, paused when frozen', () => {
    const pid = sandbox()
    const start = processStat(pid)!.start
    runcState('agent-a', pid, start)
    expect(stateFromFiles(root, 'agent-a', 'a', never)).toEqual({status: 'running', pid, procs: [{pid, start}]})
    expect(stateFromFiles(root, 'agent-a', 'a', () => true)?.status).toBe('paused')
    writeFileSync(join(root, 'agent-a', 'exec.fifo'), '')
    expect(stateFromFiles(root, 'agent-a', 'a', never)?.status).toBe('created')
    // The same pid with another start time is another process: the container's init is gone.
    runcState('agent-b', pid, '1')
    expect(stateFromFiles(root, 'agent-b', 'b', never)).toEqual({status: 'stopped', pid, procs: []})
  })

  it('runsc: the status it wrote while the sandbox lives, with the gofer to watch; stopped once the sandbox is gone', () => {
    const s = sandbox()
    const g = sandbox()
    const write = (sandboxPid: number) => writeFileSync(join(root, 'agent-c_sandbox:agent-c.state'), JSON.stringify({status: 'running', goferPid: g, sandbox: {pid: sandboxPid}}))
    write(s)
    const st = stateFromFiles(root, 'agent-c', 'c', never)
    expect(st?.status).toBe('running')
    expect(st?.procs.map((p) => p.pid)).toEqual([s, g])
    write(2 ** 22 + 1) // above pid_max: no such process
    expect(stateFromFiles(root, 'agent-c', 'c', never)).toMatchObject({status: 'stopped', procs: []})
  })

  it('undefined for files it does not know, so that the runtime is asked', () => {
    expect(stateFromFiles(root, 'agent-d', 'd', never)).toBeUndefined()
    mkdirSync(join(root, 'agent-d'))
    writeFileSync(join(root, 'agent-d', 'state.json'), '{"init_process_pid": "12"}')
    expect(stateFromFiles(root, 'agent-d', 'd', never)).toBeUndefined()
    writeFileSync(join(root, 'agent-e_sandbox:agent-e.state'), 'not json')
    expect(stateFromFiles(root, 'agent-e', 'e', never)).toBeUndefined()
  })
})

describe('endContainer when the runtime refuses the kill', () => {
  it('says not ended at once, without waiting or a SIGKILL', async () => {
    const calls: string[] = []
    const refuse: RuntimeCall = async (args) => {
      calls.push(args.join(' '))
      return result(1)
    }
    expect(await endContainer(refuse, root, 'agent-x', {status: 'running', pid: sandbox()}, 60_000)).toBe(false)
    expect(calls).toEqual(['kill agent-x TERM'])
  })
})

describe('listFromFiles (what `list` would say, for vm list)', () => {
  it('lists the containers the root names, and gives up (undefined) when one cannot be read', () => {
    const pid = sandbox()
    mkdirSync(join(root, 'agent-a'))
    writeFileSync(join(root, 'agent-a', 'state.json'), JSON.stringify({init_process_pid: pid, init_process_start: processStat(pid)!.start}))
    const a = {id: 'a', name: 'agent-a'}
    const b = {id: 'b', name: 'agent-b'}
    expect(listFromFiles(root, [a, b])).toEqual([{id: 'agent-a', status: 'running', pid}])
    writeFileSync(join(root, 'runsc-agent-b.sock'), '') // named, but no state file known here
    expect(listFromFiles(root, [a, b])).toBeUndefined()
    expect(listFromFiles(root, [])).toEqual([])
  })
})
