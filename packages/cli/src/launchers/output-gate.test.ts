import {PassThrough, Writable} from 'node:stream'
import {describe, expect, it} from 'vitest'
import {OutputGate} from './output-gate.js'

const tick = () => new Promise((r) => setImmediate(r))

function gate() {
  const log: string[] = []
  return {log, g: new OutputGate(() => log.push('pause'), () => log.push('resume'))}
}

describe('OutputGate', () => {
  it('pauses at the first hold, resumes when the last settles; non-promises hold nothing', async () => {
    const {log, g} = gate()
    let a!: () => void
    let b!: (e: Error) => void
    g.hold(undefined)
    g.hold(true)
    expect(log).toEqual([])
    g.hold(new Promise<void>((r) => (a = r)))
    g.hold(new Promise<void>((_, r) => (b = r)))
    expect(log).toEqual(['pause'])
    a()
    await tick()
    expect(log).toEqual(['pause'])
    b(new Error('a consumer that failed still lets the output go on'))
    await tick()
    expect(log).toEqual(['pause', 'resume'])
  })

  it('a full stream: one drain listener however many chunks come, resumed on drain', async () => {
    const {log, g} = gate()
    const slow = new Writable({highWaterMark: 4, write: (_c, _e, cb) => setTimeout(cb, 20)})
    for (let i = 0; i < 30; i++) g.write(slow, Buffer.from('0123456789'))
    expect(slow.listenerCount('drain')).toBe(1)
    expect(log).toEqual(['pause'])
    await new Promise((r) => slow.once('drain', r))
    await tick()
    expect(log).toEqual(['pause', 'resume'])
    expect(slow.listenerCount('drain')).toBe(0)
    const fast = new PassThrough()
    fast.resume()
    g.write(fast, Buffer.from('x'))
    expect(log).toEqual(['pause', 'resume'])
  })
})
