import {readFileSync} from 'node:fs'
import {describe, expect, it} from 'vitest'
import {AgentError} from '../errors.js'
import {alive, killProcess, lastLines, run, start, tryRun} from './index.js'

describe('host programs', () => {
  it('a missing binary is an unavailable error (exit 5) naming the fix', async () => {
    const res = await tryRun('/nonexistent/agent-test-bin', [])
    expect(res.missing).toBe(true)
    const err = await run('/nonexistent/agent-test-bin', ['x'], {fix: 'install it'}).catch((e) => e)
    expect(err).toBeInstanceOf(AgentError)
    expect(err).toMatchObject({kind: 'unavailable', exitCode: 5, hint: 'install it'})
  })

  it('a failure carries what it was for and the last lines of its output', async () => {
    const err = await run('sh', ['-c', 'echo one; echo two; echo three; exit 3'], {what: 'counting'}).catch((e) => e)
    expect(err).toBeInstanceOf(AgentError)
    expect(err.kind).toBe('internal')
    expect(err.message).toBe('counting failed: one | two | three')
    expect(await run('sh', ['-c', 'echo ok'])).toBe('ok')
  })

  it('a timeout kills the program and says so', async () => {
    const res = await tryRun('sleep', ['30'], {timeoutMs: 200})
    expect(res.timedOut).toBe(true)
    await expect(run('sleep', ['30'], {timeoutMs: 200, what: 'sleeping', kind: 'image'})).rejects.toMatchObject({kind: 'image', message: 'sleeping timed out after 0s'})
  })

  it('passes lines as they come, and input on stdin', async () => {
    const lines: string[] = []
    await run('sh', ['-c', 'cat; echo tail'], {input: 'a\nb\n', onLine: (l) => lines.push(l)})
    expect(lines).toEqual(['a', 'b', 'tail'])
  })

  it('a detached program runs in a session of its own, and killProcess ends it', async () => {
    const child = start('sleep', ['30'], {stdin: 'ignore', detached: true})
    const pid = child.pid!
    const sid = (p: number | string) => readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ')[3]
    expect(sid(pid)).not.toBe(sid('self'))
    expect(alive(pid)).toBe(true)
    await killProcess(pid, {graceMs: 100, isAlive: () => child.exitCode === null && child.signalCode === null})
    const res = await child
    expect(res.signal).toBe('SIGTERM')
  })

  it('lastLines keeps the last non-empty lines and drops buildah log prefixes', () => {
    expect(lastLines('a\n\nb\ntime="x" level=error msg=c\n', 2)).toBe('b | c')
  })
})
