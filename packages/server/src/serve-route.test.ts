import {mkdtempSync, rmSync, statSync, writeFileSync, existsSync} from 'node:fs'
import {connect, type Socket} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {frames as F, routeEnv, type ServiceContext} from './floor.js'
import {checkHello, openServeRoute, type ServeRoute} from './serve-route.js'

// The socket is fed hostile bytes by a real client connection; nothing here reaches a VM.
const dir = mkdtempSync(join(tmpdir(), 'agent-route-unit-'))
const path = join(dir, 'serve.sock')
const env = {AGENT_GUEST_DIR: '/g'}
const ctx = {paths: {root: dir}} as unknown as ServiceContext
let route: ServeRoute

const hello = (over: Record<string, unknown> = {}) => Buffer.from(JSON.stringify({proto: F.ROUTE_PROTOCOL, version: '9.9.9', root: dir, argv: ['vm', 'list'], env: routeEnv(env), stdin: false, ...over}))

/** Sends bytes, collects the server's frames until it closes the connection. */
function exchange(bytes: Buffer[], end = false): Promise<{frames: {type: number; payload: Buffer}[]; closed: boolean}> {
  return new Promise((done) => {
    const reader = new F.FrameReader(F.FROM_SERVER)
    const got: {type: number; payload: Buffer}[] = []
    const s: Socket = connect({path})
    s.on('data', (b: Buffer) => got.push(...reader.push(b)))
    s.on('error', () => undefined)
    s.on('close', () => done({frames: got, closed: true}))
    s.on('connect', () => {
      for (const b of bytes) s.write(b)
      if (end) s.end()
    })
  })
}

beforeAll(async () => {
  writeFileSync(path, 'stale') // a killed server's leftover is replaced
  route = await openServeRoute(ctx, {path, version: '9.9.9', env})
})
afterAll(async () => {
  await route.close()
  rmSync(dir, {recursive: true, force: true})
})

describe('serve route socket', () => {
  it('replaces a stale file with a socket only its owner can use', () => {
    const st = statSync(path)
    expect(st.isSocket()).toBe(true)
    expect(st.mode & 0o777).toBe(0o600)
  })

  it('drops a connection that declares an oversized frame, an unknown type, or starts with anything but a hello', async () => {
    const big = Buffer.alloc(5)
    big.writeUInt8(F.HELLO, 0)
    big.writeUInt32BE(0xffffffff, 1)
    for (const bytes of [[big], [Buffer.from([99, 0, 0, 0, 0])], [F.encodeFrame(F.GO)], [F.encodeFrame(F.STDIN, 'x')], [Buffer.from('GET / HTTP/1.1\r\n\r\n')]]) {
      const r = await exchange(bytes)
      expect(r.closed).toBe(true)
      expect(r.frames).toEqual([])
    }
    expect(route.served()).toBe(0)
  })

  it('refuses a hello of another protocol, version, state dir or environment, or an argv it does not take', async () => {
    const cases: [Buffer, RegExp][] = [
      [Buffer.from('not json'), /not JSON/],
      [Buffer.from('null'), /not an object/],
      [hello({proto: 2}), /protocol/],
      [hello({version: '0.0.1'}), /version 0\.0\.1/],
      [hello({version: '\u00e9'.repeat(5000)}), /^version \u00e9+/],
      [hello({root: '/elsewhere'}), /another state dir/],
      [hello({env: {AGENT_GUEST_DIR: '/other'}}), /AGENT_\* environment/],
      [hello({env: {}}), /AGENT_\* environment/],
      [hello({stdin: 'yes'}), /bad stdin/],
      [hello({argv: 'vm list'}), /bad argv/],
      [hello({argv: ['vm', 'exec', '-it', '--vm', 'x', '--', 'sh']}), /not a routed command line/],
      [hello({argv: ['vm', 'clean', '--all']}), /not a routed command line/],
    ]
    for (const [h, why] of cases) {
      const r = await exchange([F.encodeFrame(F.HELLO, h)])
      expect(r.frames.map((f) => f.type)).toEqual([F.REFUSE])
      expect(r.frames[0]!.payload.toString()).toMatch(why)
    }
    expect(route.served()).toBe(0)
  })

  it('accepts a good hello with READY and runs nothing until GO', async () => {
    expect(checkHello(hello(), {version: '9.9.9', root: dir, env})).toMatchObject({req: {kind: 'list'}})
    const s = connect({path})
    const reader = new F.FrameReader(F.FROM_SERVER)
    const first = await new Promise<number[]>((done) => {
      s.on('data', (b: Buffer) => done(reader.push(b).map((f) => f.type)))
      s.on('connect', () => s.write(F.encodeFrame(F.HELLO, hello())))
    })
    expect(first).toEqual([F.READY])
    s.destroy()
    expect(route.served()).toBe(0)
  })

  it('survives random frames in random order, and still answers a good hello afterwards', async () => {
    let seed = 42
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n)
    const types = [F.HELLO, F.GO, F.STDIN, F.STDIN_END, F.SIGNAL]
    for (let i = 0; i < 150; i++) {
      const bytes: Buffer[] = []
      if (rnd(2)) bytes.push(F.encodeFrame(F.HELLO, hello(rnd(2) ? {} : {argv: ['vm', 'exec', '--vm', 'x', '--', 'cat'], stdin: true})))
      for (let k = rnd(6); k > 0; k--) {
        const t = types[rnd(types.length)]!
        const payload = t === F.STDIN ? Buffer.alloc(rnd(70_000)) : t === F.SIGNAL ? Buffer.from(['SIGINT', 'SIGKILL', 'x'.repeat(16)][rnd(3)]!) : t === F.HELLO ? Buffer.from('{') : Buffer.alloc(0)
        try {
          bytes.push(F.encodeFrame(t, payload))
        } catch {
          bytes.push(Buffer.from([t, 0xff, 0xff, 0xff, 0xff]))
        }
      }
      if (rnd(3) === 0) bytes.push(Buffer.from([rnd(256)]))
      await exchange(bytes, true)
    }
    const r = await exchange([F.encodeFrame(F.HELLO, hello({version: 'x'}))])
    expect(r.frames.map((f) => f.type)).toEqual([F.REFUSE])
  })

  it('removes its socket when closed', async () => {
    const other = join(dir, 'other.sock')
    const r = await openServeRoute(ctx, {path: other, version: '9.9.9', env})
    expect(existsSync(other)).toBe(true)
    await r.close()
    expect(existsSync(other)).toBe(false)
  })
})
