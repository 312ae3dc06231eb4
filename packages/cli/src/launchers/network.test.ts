import {spawn, type ChildProcess} from 'node:child_process'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {alive} from '../system/index.js'
import {netnsPath, slirpPid, stopSlirp} from './network.js'

const dir = mkdtempSync(join(tmpdir(), 'agent-network-test-'))
const children: ChildProcess[] = []
afterAll(() => {
  for (const c of children) c.kill('SIGKILL')
  rmSync(dir, {recursive: true, force: true})
})

/** A VM dir with a namespace file (a plain file stands in for the bind mount). */
function vmDir(name: string): string {
  const d = join(dir, name)
  mkdirSync(d, {recursive: true})
  writeFileSync(netnsPath(d), '')
  return d
}

/** A process whose argv reads as slirp4netns on `d`'s namespace (node, renamed through argv0). */
function fakeSlirp(d: string): ChildProcess {
  const c = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e9)', '--', '--netns-type=path', netnsPath(d), 'tap0'], {argv0: '/usr/bin/slirp4netns', stdio: 'ignore'})
  children.push(c)
  return c
}

/** The signal that ended it, or 'still running' 5 s on. */
const ended = (c: ChildProcess) =>
  new Promise<string | null>((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve(c.signalCode)
    const t = setTimeout(() => resolve('still running'), 5_000)
    c.once('exit', (_, sig) => (clearTimeout(t), resolve(sig)))
  })

describe('slirp4netns of a VM', () => {
  it('stopSlirp ends one that has no pid file (its starter was killed before writing it), and only that VM\'s', async () => {
    const a = vmDir('a')
    const b = vmDir('b')
    const stray = fakeSlirp(a)
    const bystander = fakeSlirp(b)
    await new Promise((r) => setTimeout(r, 200))
    expect(slirpPid(a), 'no pid file').toBeUndefined()
    await stopSlirp(a)
    expect(await ended(stray)).toBe('SIGTERM')
    expect(alive(bystander.pid)).toBe(true)
  })

  it('a pid file naming some other process (a recycled pid) is never acted on', async () => {
    const c = vmDir('c')
    const other = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1e9)'], {stdio: 'ignore'})
    children.push(other)
    writeFileSync(join(c, 'slirp.pid'), `${other.pid}\n`)
    expect(slirpPid(c)).toBeUndefined()
    await stopSlirp(c)
    expect(alive(other.pid)).toBe(true)
  })
})
