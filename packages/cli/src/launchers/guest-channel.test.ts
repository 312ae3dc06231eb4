/**
 * The exec channel without a sandbox: agent-init built for this host and run as a plain process
 * (`agent-init init --channel <tmp>/init.sock`; PID-1-only checks stay off when it is not PID 1),
 * driven by the real host client, and fuzzed both ways: malformed frames into agent-init (it must
 * never crash, and its init process must survive everything) and a hostile server against the
 * client (it must reject cleanly, with bounded buffering).
 */
import {lstatSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync} from 'node:fs'
import {createServer, connect, type Server, type Socket} from 'node:net'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {alive, type Child, run, sleep, start} from '../system/index.js'
import {ChannelError, decodeExit, encodeExec, encodeFrame, FrameDecoder, MAX_GUEST_FRAME, openChannel, T} from './guest-channel.js'

const SRC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'guest', 'agent-init.c')
const dir = mkdtempSync(join(tmpdir(), 'agent-chan-test-'))
const BIN = join(dir, 'agent-init')
const SOCK = join(dir, 'init.sock')
let init: Child
/** What agent-init wrote to stderr: handler crashes and sanitizer reports land here. */
let initErr = ''
const expectNoCrash = () => expect(initErr).not.toMatch(/crashed|AddressSanitizer|runtime error/)

/** A deterministic PRNG, so a failing fuzz case can be replayed. */
function prng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms
  while (!cond() && Date.now() < until) await sleep(20)
  return cond()
}

const initAlive = () => init.exitCode === null && init.signalCode === null && alive(init.pid)

async function runCmd(argv: string[], o: {stdin?: string; timeoutMs?: number; env?: Record<string, string>; cwd?: string} = {}) {
  const ch = await openChannel(SOCK)
  let stdout = ''
  let stderr = ''
  const p = ch.exec({argv, timeoutMs: o.timeoutMs ?? 10_000, stdin: o.stdin !== undefined, env: o.env, cwd: o.cwd}, {onStdout: (b) => (stdout += b), onStderr: (b) => (stderr += b)})
  if (o.stdin !== undefined) {
    p.write(Buffer.from(o.stdin))
    p.closeStdin()
  }
  const exit = await p.done
  return {exit, stdout, stderr}
}

/** Raw bytes in, whatever comes back until the guest closes (or ms pass). */
function raw(bytes: Buffer[], ms = 2_000): Promise<Buffer> {
  return new Promise((resolve) => {
    const s = connect({path: SOCK})
    const got: Buffer[] = []
    const done = () => (clearTimeout(t), s.destroy(), resolve(Buffer.concat(got)))
    const t = setTimeout(done, ms)
    s.on('connect', () => {
      for (const b of bytes) s.write(b)
    })
    s.on('data', (b) => got.push(b))
    s.on('error', done)
    s.on('close', done)
  })
}

const hello = (lo = 1, hi = 1) => {
  const p = Buffer.alloc(8)
  p.write('AGCH')
  p.writeUInt16BE(lo, 4)
  p.writeUInt16BE(hi, 6)
  return encodeFrame(T.HELLO, p)
}

beforeAll(async () => {
  // A host build with AddressSanitizer and UBSan: a memory error in a handler aborts it, and
  // init reports the crash on stderr (checked below). guest/build.sh makes the static one.
  await run('gcc', ['-O1', '-g', '-fsanitize=address,undefined', '-fno-sanitize-recover=all', '-Wall', '-Wextra', '-Werror', '-o', BIN, SRC], {
    what: 'building agent-init for the host',
    fix: 'apt-get install gcc',
    timeoutMs: 120_000,
  })
  init = start(BIN, ['init', '--channel', SOCK], {stdin: 'ignore', env: {ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=1'}})
  init.stderr?.on('data', (b: Buffer) => {
    initErr += b.toString()
    process.stderr.write(`agent-init: ${b}`)
  })
  expect(await waitFor(() => existsSock(), 5_000)).toBe(true)
}, 180_000)

afterAll(async () => {
  if (init?.pid) process.kill(init.pid, 'SIGTERM')
  await init?.catch(() => undefined)
  rmSync(dir, {recursive: true, force: true})
})

function existsSock(): boolean {
  try {
    return lstatSync(SOCK).isSocket()
  } catch {
    return false
  }
}

describe('exec channel: agent-init as a plain process', () => {
  it('says hello with its version, answers pings, refuses versions it does not speak', async () => {
    const ch = await openChannel(SOCK)
    expect(ch.features & 0x0f).toBe(0x0f)
    const rtts: number[] = []
    for (let i = 0; i < 20; i++) rtts.push(await ch.ping())
    rtts.sort((a, b) => a - b)
    expect(rtts[10]).toBeLessThan(50)
    ch.close()
    const answer = await raw([hello(2, 3)])
    expect(new FrameDecoder().push(answer)[0]).toMatchObject({type: T.ERROR})
    expect(answer.toString()).toContain('unsupported protocol version')
  })

  it('runs argv with exactly the env and cwd given; stdout, stderr and the exit code as facts', async () => {
    const r = await runCmd(['/bin/sh', '-c', 'echo "out $FOO $(pwd)"; echo err >&2; env | grep -c . ; exit 7'], {env: {FOO: 'bar', PATH: '/usr/bin:/bin'}, cwd: '/tmp'})
    expect(r.exit).toMatchObject({reason: 'exit', code: 7})
    expect(r.stdout).toBe('out bar /tmp\n3\n') // FOO, PATH and the shell's own PWD
    expect(r.stderr).toBe('err\n')
    const missing = await runCmd(['/nonexistent/cmd'])
    expect(missing.exit).toMatchObject({reason: 'exit', code: 127})
    expect(missing.stderr).toContain('cannot run /nonexistent/cmd')
  })

  it('pipelined: the exec goes out behind the hello, in one round trip', async () => {
    const ch = await openChannel(SOCK, {pipeline: true})
    let out = ''
    const p = ch.exec({argv: ['/bin/echo', 'piped'], timeoutMs: 5_000}, {onStdout: (b) => (out += b)})
    expect(await p.done).toMatchObject({reason: 'exit', code: 0})
    await ch.ready
    expect(out).toBe('piped\n')
  })

  it('streams stdin and closes it', async () => {
    const big = 'x'.repeat(300_000) + '\n'
    const r = await runCmd(['/bin/sh', '-c', 'wc -c'], {stdin: big})
    expect(r.exit).toMatchObject({reason: 'exit', code: 0})
    expect(r.stdout.trim()).toBe(String(big.length))
  })

  it('stdin past many drains (a slow reader): every byte arrives and no listener piles up', async () => {
    const warnings: string[] = []
    const onWarning = (w: Error) => void warnings.push(w.name)
    process.on('warning', onWarning)
    try {
      const ch = await openChannel(SOCK)
      let out = ''
      const p = ch.exec({argv: ['/bin/sh', '-c', 'sleep 0.3; wc -c'], timeoutMs: 20_000, stdin: true}, {onStdout: (b) => (out += b)})
      const chunk = Buffer.alloc(64 * 1024, 0x61)
      let drains = 0
      for (let i = 0; i < 64; i++) {
        if (!p.write(chunk)) {
          drains++
          await p.drain()
        }
      }
      p.closeStdin()
      expect(await p.done).toMatchObject({reason: 'exit', code: 0})
      expect(out.trim()).toBe(String(64 * chunk.length))
      expect(drains, 'the guest pushed back').toBeGreaterThan(10)
      await sleep(50) // warnings are emitted on the next tick
      expect(warnings).not.toContain('MaxListenersExceededWarning')
    } finally {
      process.off('warning', onWarning)
    }
  })

  it('delivers signals; the exit report says signal', async () => {
    const ch = await openChannel(SOCK)
    let out = ''
    const p = ch.exec({argv: ['/bin/sh', '-c', 'echo ready; exec sleep 30'], timeoutMs: 0}, {onStdout: (b) => (out += b)})
    expect(await waitFor(() => out.includes('ready'), 5_000)).toBe(true)
    p.signal(15)
    expect(await p.done).toMatchObject({reason: 'signal', code: 15})
  })

  it('a timeout kills the whole tree (setsid and double-forked too) and is reported as timeout', async () => {
    const pids = join(dir, 'tree.pids')
    const t0 = Date.now()
    const r = await runCmd(['/bin/sh', '-c', `sleep 60 & echo $! > ${pids}; setsid sh -c 'sleep 60 & wait' & echo $! >> ${pids}; sleep 60`], {timeoutMs: 1_000})
    expect(r.exit).toMatchObject({reason: 'timeout', code: 124})
    expect(r.exit.guestMs).toBeGreaterThanOrEqual(900)
    expect(Date.now() - t0).toBeLessThan(15_000)
    for (const pid of readFileSync(pids, 'utf8').trim().split('\n').map(Number)) expect(alive(pid), `pid ${pid}`).toBe(false)
  })

  it('a client that goes away ends its command within 1 s', async () => {
    const pidFile = join(dir, 'gone.pid')
    const ch = await openChannel(SOCK)
    let out = ''
    const p = ch.exec({argv: ['/bin/sh', '-c', `echo $$ > ${pidFile}; echo ready; trap '' TERM HUP; sleep 60; sleep 60`], timeoutMs: 0}, {onStdout: (b) => (out += b)})
    expect(await waitFor(() => out.includes('ready'), 5_000)).toBe(true)
    const pid = Number(readFileSync(pidFile, 'utf8'))
    expect(alive(pid)).toBe(true)
    const t0 = Date.now()
    p.abort()
    expect(await waitFor(() => !alive(pid), 1_000), 'command still alive 1 s after the client left').toBe(true)
    expect(Date.now() - t0).toBeLessThan(1_000)
    await expect(p.done).rejects.toBeInstanceOf(ChannelError)
  })

  it('a PTY with a window size, resizable', async () => {
    const ch = await openChannel(SOCK)
    let out = ''
    const p = ch.exec({argv: ['/bin/sh', '-c', 'tty; stty size; read x; stty size'], timeoutMs: 10_000, pty: {rows: 33, cols: 101}}, {onStdout: (b) => (out += b)})
    expect(await waitFor(() => out.includes('33 101'), 5_000), out).toBe(true)
    p.resize(40, 120)
    p.write(Buffer.from('go\n'))
    expect(await p.done).toMatchObject({reason: 'exit', code: 0})
    expect(out).toMatch(/\/dev\/pts\/\d+/)
    expect(out).toContain('40 120')
  })

  it('16 concurrent execs are independent', async () => {
    // With stdin closed as the command exits (the CLI's case): the report must never be lost.
    const rs = await Promise.all(Array.from({length: 16}, (_, i) => runCmd(['/bin/sh', '-c', `echo ${i}; exit ${i}`], {stdin: ''})))
    rs.forEach((r, i) => {
      expect(r.exit).toMatchObject({reason: 'exit', code: i})
      expect(r.stdout).toBe(`${i}\n`)
    })
  })

  it('a handler killed mid-command does not touch init; the next exec works', async () => {
    const ch = await openChannel(SOCK)
    let out = ''
    // The handler is the command's parent.
    const p = ch.exec({argv: ['/bin/sh', '-c', 'echo ready $PPID; sleep 30'], timeoutMs: 0}, {onStdout: (b) => (out += b)})
    expect(await waitFor(() => out.includes('\n'), 5_000)).toBe(true)
    const handler = Number(/ready (\d+)/.exec(out)![1])
    expect(handler).not.toBe(init.pid)
    process.kill(handler, 'SIGKILL')
    await expect(p.done).rejects.toBeInstanceOf(ChannelError)
    expect(initAlive()).toBe(true)
    expectNoCrash() // SIGKILL is not a crash
    expect((await runCmd(['/bin/echo', 'ok'])).stdout).toBe('ok\n')
  })

  it('takes its socket name back when something replaces it', async () => {
    unlinkSync(SOCK)
    writeFileSync(SOCK, 'not a socket')
    await expect(openChannel(SOCK)).rejects.toMatchObject({stage: 'connect'})
    expect(await waitFor(() => existsSock(), 3_000)).toBe(true)
    expect((await runCmd(['/bin/echo', 'back'])).stdout).toBe('back\n')
  })

  it('fuzz: malformed and mutated frames never crash agent-init; init survives and still serves', async () => {
    const rnd = prng(14)
    const exec = encodeFrame(T.EXEC, encodeExec({argv: ['/bin/echo', 'hi'], timeoutMs: 5_000}))
    const seeds = [
      Buffer.concat([hello(), exec]),
      Buffer.concat([hello(), encodeFrame(T.PING, Buffer.from('p')), exec, encodeFrame(T.STDIN, Buffer.from('x')), encodeFrame(T.SIGNAL, Buffer.from([9]))]),
      Buffer.concat([hello(), encodeFrame(T.EXEC, Buffer.from('a/bin/sleep\0a0.2\0i1\0p24,80\0t100\0'))]),
    ]
    const fixed: Buffer[] = [
      Buffer.from([0xff, 0xff, 0xff, 0xff, 1]), // 4 GiB length
      Buffer.from([0, 0, 0, 0]), // zero length
      Buffer.concat([hello(), Buffer.from([0, 0x10, 0, 2, T.EXEC])]), // 1 MiB+1 payload: one too many
      Buffer.concat([hello(), encodeFrame(T.EXEC, Buffer.from('a/bin/true'))]), // no NUL
      Buffer.concat([hello(), encodeFrame(T.EXEC, Buffer.from('\0\0\0'))]), // empty items
      Buffer.concat([hello(), encodeFrame(T.EXEC, Buffer.from('z\0'))]), // unknown item
      Buffer.concat([hello(), encodeFrame(T.EXEC, Buffer.from('a/bin/true\0l\0'))]), // argv and line
      Buffer.concat([hello(), encodeFrame(T.EXEC, Buffer.from('a/bin/true\0t-5\0p0,99999999\0'))]),
      Buffer.concat([hello(), encodeFrame(T.EXEC, Buffer.from('a/bin/true\0unobody-such-user\0'))]),
      Buffer.concat([hello(), encodeFrame(T.EXEC, Buffer.from('a/bin/true\0e=x\0eNOEQUALS\0'))]),
      Buffer.concat([hello(), exec, exec]), // a second exec on one connection
      Buffer.concat([hello(), encodeFrame(T.STDIN, Buffer.from('early'))]),
      Buffer.concat([hello(), encodeFrame(T.PING, Buffer.alloc(65))]),
      encodeFrame(T.PING), // ping before hello
      hello(0, 0),
      hello(9, 1),
      Buffer.from('GET / HTTP/1.1\r\n\r\n'),
    ]
    const cases: Buffer[] = [...fixed]
    for (let i = 0; i < 250; i++) {
      const b = Buffer.from(seeds[Math.floor(rnd() * seeds.length)]!)
      const n = 1 + Math.floor(rnd() * 6)
      for (let k = 0; k < n; k++) {
        const at = Math.floor(rnd() * b.length)
        const op = rnd()
        if (op < 0.6) b[at] = Math.floor(rnd() * 256)
        else if (op < 0.8) b[at] ^= 1 << Math.floor(rnd() * 8)
        else b.fill(rnd() < 0.5 ? 0 : 0xff, at, Math.min(b.length, at + 4))
      }
      cases.push(rnd() < 0.2 ? b.subarray(0, Math.floor(rnd() * b.length)) : b)
    }
    for (let i = 0; i < 40; i++) cases.push(Buffer.from(Array.from({length: Math.floor(rnd() * 300)}, () => Math.floor(rnd() * 256))))
    // In parallel batches (each connection is its own guest process), bounded in time.
    for (let i = 0; i < cases.length; i += 16) {
      await Promise.all(cases.slice(i, i + 16).map((c) => raw([c], 400)))
      expect(initAlive(), `init died at fuzz case ${i}`).toBe(true)
    }
    // 100 connections at once that never say hello: a backlog, not a crash.
    const idle: Socket[] = Array.from({length: 100}, () => connect({path: SOCK}).on('error', () => undefined))
    await sleep(300)
    for (const s of idle) s.destroy()
    expect(initAlive()).toBe(true)
    const r = await runCmd(['/bin/echo', 'still here'])
    expect(r).toMatchObject({exit: {reason: 'exit', code: 0}, stdout: 'still here\n'})
    expectNoCrash()
  }, 120_000)
})

describe('exec channel: the host treats the guest as hostile', () => {
  let server: Server
  let behave: (s: Socket) => void = () => undefined
  const fake = join(dir, 'fake.sock')

  const conns = new Set<Socket>()
  beforeAll(async () => {
    server = createServer((s) => {
      conns.add(s)
      s.on('error', () => undefined)
      s.on('close', () => conns.delete(s))
      behave(s)
    })
    await new Promise<void>((r) => server.listen(fake, r))
  })
  afterAll(async () => {
    for (const s of conns) s.destroy()
    await new Promise<void>((r) => server.close(() => r()))
  })

  const helloOk = () => encodeFrame(T.HELLO_OK, Buffer.from([0x41, 0x47, 0x43, 0x48, 0, 1, 0, 0, 0, 0x0f]))
  /** A fake agent-init: a good hello, then `after` once the exec request arrives. */
  const afterExec = (after: (s: Socket) => void) => (s: Socket) => {
    let n = 0
    s.on('data', () => {
      if (n++ === 0) s.write(helloOk())
      else after(s)
    })
  }
  async function execAgainstFake(): Promise<unknown> {
    const ch = await openChannel(fake, {timeoutMs: 2_000})
    return ch.exec({argv: ['x'], timeoutMs: 1_000}, {onStdout: () => undefined}).done.then(
      (v) => v,
      (e: unknown) => e,
    )
  }

  it('refuses a symlink or a non-socket at the channel path (the guest owns that directory)', async () => {
    const link = join(dir, 'link.sock')
    symlinkSync(SOCK, link)
    await expect(openChannel(link)).rejects.toMatchObject({stage: 'connect', message: expect.stringContaining('not a socket')})
    await expect(openChannel(join(dir, 'nothing.sock'))).rejects.toMatchObject({stage: 'connect'})
    writeFileSync(join(dir, 'file.sock'), '')
    await expect(openChannel(join(dir, 'file.sock'))).rejects.toMatchObject({stage: 'connect'})
  })

  it('a server that never answers, or answers garbage, fails hello: safe to fall back', async () => {
    behave = () => undefined
    await expect(openChannel(fake, {timeoutMs: 300})).rejects.toMatchObject({stage: 'hello'})
    behave = (s) => s.write('HTTP/1.1 200 OK\r\n\r\n')
    await expect(openChannel(fake, {timeoutMs: 2_000})).rejects.toMatchObject({stage: 'hello'})
    behave = (s) => s.write(encodeFrame(T.HELLO_OK, Buffer.from('AGCH\0\x09\0\0\0\0')))
    await expect(openChannel(fake, {timeoutMs: 2_000})).rejects.toMatchObject({stage: 'hello'})
    behave = (s) => s.end()
    await expect(openChannel(fake, {timeoutMs: 2_000})).rejects.toMatchObject({stage: 'hello'})
  })

  it('pipelined: whatever breaks before HELLO_OK is stage hello (nothing ran, fallback is safe); after it, not', async () => {
    const started = encodeFrame(T.STARTED, Buffer.from([0, 0, 0, 5]))
    const exit0 = encodeFrame(T.EXIT, Buffer.alloc(9))
    for (const reply of [Buffer.from('garbage!'), encodeFrame(T.ERROR, Buffer.from('no')), encodeFrame(T.HELLO_OK, Buffer.from('AGCH\0\x09\0\0\0\0')), Buffer.concat([encodeFrame(T.HELLO_OK, Buffer.alloc(10)), started, exit0]), Buffer.alloc(0)]) {
      behave = (s) => s.end(reply)
      const ch = await openChannel(fake, {pipeline: true, timeoutMs: 2_000})
      const e = await ch.exec({argv: ['x'], timeoutMs: 1_000}).done.catch((x: unknown) => x)
      expect(e, reply.toString('hex')).toMatchObject({stage: 'hello'})
    }
    // A good HELLO_OK then garbage in the same write: the exec may have run, so not 'hello'.
    behave = (s) => s.end(Buffer.concat([helloOk(), encodeFrame(0x42)]))
    const ch = await openChannel(fake, {pipeline: true, timeoutMs: 2_000})
    const e = await ch.exec({argv: ['x'], timeoutMs: 1_000}).done.catch((x: unknown) => x)
    expect(e).toMatchObject({stage: 'protocol'})
  })

  it('an oversized frame is refused from its header, never buffered', async () => {
    behave = afterExec((s) => {
      const h = Buffer.alloc(5)
      h.writeUInt32BE(0xffffffff, 0)
      h[4] = T.STDOUT
      s.write(h)
      s.write(Buffer.alloc(1024 * 1024)) // the client must have given up already
    })
    const e = await execAgainstFake()
    expect(e).toBeInstanceOf(ChannelError)
    expect((e as ChannelError).message).toContain('out of bounds')
    expect(() => new FrameDecoder().push(Buffer.from([0, 1, 0, 2]))).toThrow(/out of bounds/)
    expect(new FrameDecoder().push(encodeFrame(T.STDOUT, Buffer.alloc(MAX_GUEST_FRAME)))).toHaveLength(1)
  })

  it('bad exit reports, frames out of order and unknown types are protocol errors', async () => {
    const started = encodeFrame(T.STARTED, Buffer.from([0, 0, 0, 5]))
    const exit = (reason: number, code: number) => {
      const b = Buffer.alloc(9)
      b[0] = reason
      b.writeUInt32BE(code, 1)
      return encodeFrame(T.EXIT, b)
    }
    for (const reply of [
      exit(0, 0), // exit before started
      Buffer.concat([started, exit(7, 0)]),
      Buffer.concat([started, exit(0, 256)]),
      Buffer.concat([started, exit(1, 0)]),
      Buffer.concat([started, exit(2, 0)]),
      Buffer.concat([started, encodeFrame(T.EXIT, Buffer.alloc(3))]),
      Buffer.concat([started, started]),
      Buffer.concat([started, encodeFrame(0x42)]),
      Buffer.concat([started, encodeFrame(T.HELLO_OK, Buffer.alloc(10))]),
      encodeFrame(T.STDOUT, Buffer.from('before started')),
      Buffer.concat([started, encodeFrame(T.ERROR, Buffer.from('\x1b[31m/etc/shadow\n'.repeat(100)))]),
    ]) {
      behave = afterExec((s) => s.write(reply))
      const e = await execAgainstFake()
      expect(e, reply.toString('hex')).toBeInstanceOf(ChannelError)
      expect((e as ChannelError).message).not.toMatch(/\x1b|\n/)
      expect((e as ChannelError).message.length).toBeLessThan(300)
    }
    // A well-formed report is taken as the guest's word.
    behave = afterExec((s) => s.write(Buffer.concat([started, encodeFrame(T.STDOUT, Buffer.from('hi')), exit(1, 9)])))
    expect(await execAgainstFake()).toEqual({reason: 'signal', code: 9, guestMs: 0})
    expect(() => decodeExit(Buffer.alloc(9, 0xff))).toThrow(ChannelError)
  })

  it('fuzz: random replies after hello end in a result or a ChannelError, never a throw elsewhere', async () => {
    const rnd = prng(1414)
    const started = encodeFrame(T.STARTED, Buffer.from([0, 0, 0, 5]))
    for (let i = 0; i < 150; i++) {
      const parts = [rnd() < 0.7 ? started : Buffer.alloc(0)]
      for (let k = Math.floor(rnd() * 4); k > 0; k--) {
        const len = Math.floor(rnd() * 40)
        const types = [T.STDOUT, T.STDERR, T.EXIT, T.PONG, T.ERROR, T.STARTED, Math.floor(rnd() * 256)]
        parts.push(rnd() < 0.8 ? encodeFrame(types[Math.floor(rnd() * types.length)]!, Buffer.from(Array.from({length: len}, () => Math.floor(rnd() * 256)))) : Buffer.from(Array.from({length: len}, () => Math.floor(rnd() * 256))))
      }
      const reply = Buffer.concat(parts)
      behave = afterExec((s) => s.end(reply)) // with or without an exit report, the guest then goes
      const e = await execAgainstFake()
      if (!(e instanceof ChannelError)) expect(e, reply.toString('hex')).toMatchObject({reason: expect.stringMatching(/^(exit|signal|timeout)$/)})
    }
  }, 120_000)
})
