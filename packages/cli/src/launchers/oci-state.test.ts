import {spawn} from 'node:child_process'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {pinProcess, processEnded, type RunResult} from '../system/index.js'
import {containerState, endContainer, hasRuntimeState, listContainers, type RuntimeCall, sandboxProcesses} from './oci-state.js'

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
