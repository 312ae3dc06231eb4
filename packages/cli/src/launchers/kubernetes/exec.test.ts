// podExec against a real WebSocket server on 127.0.0.1 that speaks the exec API's channel
// framing the way the API server does (subprotocol choice, channel bytes, the V1Status on
// channel 3). The e2e suite runs the same code against the API stand-in with real containers.
import type {AddressInfo} from 'node:net'
import {Readable} from 'node:stream'
import {KubeConfig} from '@kubernetes/client-node'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {WebSocketServer, type WebSocket} from 'ws'
import {AgentError} from '../../errors.js'
import type {Cluster} from './client.js'
import {describeWsError, execPath, exitFromStatus, podExec} from './exec.js'

type Behaviour = (ws: WebSocket, url: URL) => void
let server: WebSocketServer
let offered = ['v5.channel.k8s.io', 'v4.channel.k8s.io']
let behaviour: Behaviour
const seen: Array<{url: URL; auth?: string; protocol: string}> = []

const send = (ws: WebSocket, ch: number, data: string | Buffer) => ws.send(Buffer.concat([Buffer.from([ch]), Buffer.from(data)]))
const exitStatus = (code: number) =>
  code === 0 ? {status: 'Success', metadata: {}} : {status: 'Failure', reason: 'NonZeroExitCode', message: `command terminated with non-zero exit code: ${code}`, details: {causes: [{reason: 'ExitCode', message: String(code)}]}}

beforeAll(async () => {
  server = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    handleProtocols: (protocols) => offered.find((p) => protocols.has(p)) ?? false,
  })
  server.on('connection', (ws, req) => {
    const url = new URL(req.url!, 'http://x')
    seen.push({url, auth: req.headers.authorization, protocol: ws.protocol})
    behaviour(ws, url)
  })
  await new Promise((r) => server.once('listening', r))
})
afterAll(() => new Promise((r) => server.close(r)))

function cluster(): Cluster {
  const kc = new KubeConfig()
  const port = (server.address() as AddressInfo).port
  kc.loadFromOptions({
    clusters: [{name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true}],
    users: [{name: 'u', token: 'secret-token'}],
    contexts: [{name: 'x', cluster: 'c', user: 'u', namespace: 'ns'}],
    currentContext: 'x',
  })
  return {kc, namespace: 'ns', context: 'x', server: `http://127.0.0.1:${port}`} as Cluster
}

/** Echoes stdin to stdout until stdin closes (v5 close frame), then exits with the number it read. */
const echoUntilClose: Behaviour = (ws) => {
  const got: Buffer[] = []
  ws.on('message', (d: Buffer) => {
    if (d[0] === 0) {
      got.push(d.subarray(1))
      send(ws, 1, d.subarray(1))
    } else if (d[0] === 255 && d[1] === 0) {
      send(ws, 2, 'stdin closed')
      send(ws, 3, JSON.stringify(exitStatus(Number(Buffer.concat(got).toString().trim()) || 0)))
      ws.close(1000)
    }
  })
}

const io = () => {
  const out: Buffer[] = []
  const err: Buffer[] = []
  return {out, err, onStdout: (b: Buffer) => out.push(b), onStderr: (b: Buffer) => err.push(b)}
}

describe('podExec', () => {
  it('v5: sends the command, streams, closes stdin with a close frame, and takes the exit code from the status channel', async () => {
    offered = ['v5.channel.k8s.io', 'v4.channel.k8s.io']
    behaviour = echoUntilClose
    const o = io()
    const r = await podExec(cluster(), 'agent-python-0123abcd', ['/bin/sh', '-c', 'cat'], {stdin: Buffer.from('42\n'), onStdout: o.onStdout, onStderr: o.onStderr})
    expect(r).toEqual({exitCode: 42, protocol: 'v5.channel.k8s.io'})
    expect(Buffer.concat(o.out).toString()).toBe('42\n')
    expect(Buffer.concat(o.err).toString()).toBe('stdin closed')
    const last = seen.at(-1)!
    expect(last.auth).toBe('Bearer secret-token')
    expect(last.url.pathname).toBe('/api/v1/namespaces/ns/pods/agent-python-0123abcd/exec')
    expect(last.url.searchParams.getAll('command')).toEqual(['/bin/sh', '-c', 'cat'])
    expect(last.url.searchParams.get('container')).toBe('sandbox')
    expect(last.url.searchParams.get('stdin')).toBe('true')
  })

  it('falls back to v4 when the server offers only that; exit 0 is Success', async () => {
    offered = ['v4.channel.k8s.io']
    behaviour = (ws) => {
      send(ws, 1, 'hi')
      send(ws, 3, JSON.stringify(exitStatus(0)))
      ws.close(1000)
    }
    const o = io()
    const r = await podExec(cluster(), 'p', ['true'], {onStdout: o.onStdout, onStderr: o.onStderr})
    expect(r).toEqual({exitCode: 0, protocol: 'v4.channel.k8s.io'})
    expect(seen.at(-1)!.url.searchParams.get('stdin')).toBe('false')
    expect(Buffer.concat(o.out).toString()).toBe('hi')
  })

  it('v4 with a plain stream: its end cannot be said, so the exec is closed and no exit code is invented', async () => {
    offered = ['v4.channel.k8s.io']
    behaviour = (ws) => ws.on('message', (d: Buffer) => d[0] === 0 && send(ws, 1, d.subarray(1))) // a cat that never sees EOF
    const o = io()
    const r = await podExec(cluster(), 'p', ['cat'], {stdin: Readable.from([Buffer.from('abc')]), onStdout: o.onStdout, onStderr: o.onStderr})
    expect(r.exitCode).toBeNull()
    expect(r.protocol).toBe('v4.channel.k8s.io')
    expect(r.lost).toMatch(/speaks only v4.channel.k8s.io/)
  })

  it('v4 with framed stdin: each chunk as LEN\\n + bytes, then 0\\n', async () => {
    offered = ['v4.channel.k8s.io']
    const got: Buffer[] = []
    behaviour = (ws) =>
      ws.on('message', (d: Buffer) => {
        got.push(d.subarray(1))
        if (Buffer.concat(got).toString().endsWith('0\n')) {
          send(ws, 3, JSON.stringify(exitStatus(0)))
          ws.close(1000)
        }
      })
    const o = io()
    const r = await podExec(cluster(), 'p', ['x'], {stdin: Readable.from([Buffer.from('ab'), Buffer.from('cde')]), framed: true, onStdout: o.onStdout, onStderr: o.onStderr})
    expect(r.exitCode).toBe(0)
    expect(Buffer.concat(got).toString()).toBe('2\nab3\ncde0\n')
  })

  it('a connection that ends with no status says so, never invents an exit code', async () => {
    offered = ['v5.channel.k8s.io']
    behaviour = (ws) => {
      send(ws, 1, 'partial')
      ws.close(1000)
    }
    const o = io()
    const r = await podExec(cluster(), 'p', ['true'], {onStdout: o.onStdout, onStderr: o.onStderr})
    expect(r.exitCode).toBeNull()
    expect(r.lost).toMatch(/without an exit status/)
  })

  it('our abort closes the exec and reports why', async () => {
    offered = ['v5.channel.k8s.io']
    behaviour = () => undefined // a command that never ends
    const ac = new AbortController()
    const o = io()
    const p = podExec(cluster(), 'p', ['sleep', '1000'], {onStdout: o.onStdout, onStderr: o.onStderr, signal: ac.signal})
    setTimeout(() => ac.abort(new Error('deadline')), 100)
    const r = await p
    expect(r.exitCode).toBeNull()
    expect(r.lost).toBe('deadline')
  })

  it('a refused upgrade is a clear unavailable error', async () => {
    offered = [] // no protocol in common: the server refuses the handshake
    behaviour = () => undefined
    const o = io()
    await expect(podExec(cluster(), 'p', ['true'], {onStdout: o.onStdout, onStderr: o.onStderr})).rejects.toThrow(/cannot open an exec in pod p/)
  })
})

describe('exitFromStatus', () => {
  it('reads Success and NonZeroExitCode', () => {
    expect(exitFromStatus(Buffer.from(JSON.stringify(exitStatus(0))), 'p')).toBe(0)
    expect(exitFromStatus(Buffer.from(JSON.stringify(exitStatus(137))), 'p')).toBe(137)
  })

  it('refuses hostile or broken statuses instead of guessing', () => {
    const bad = (s: unknown) => () => exitFromStatus(Buffer.from(typeof s === 'string' ? s : JSON.stringify(s)), 'p')
    expect(bad('not json')).toThrow(AgentError)
    expect(bad({status: 'Failure', reason: 'NonZeroExitCode', details: {causes: [{reason: 'ExitCode', message: '99999'}]}})).toThrow(/no readable exit code/)
    expect(bad({status: 'Failure', reason: 'NonZeroExitCode', details: {causes: [{reason: 'ExitCode', message: '-1'}]}})).toThrow(/no readable exit code/)
    expect(bad({status: 'Failure', reason: 'InternalError', message: 'container not running'})).toThrow(/failed: container not running/)
  })
})

describe('execPath', () => {
  it('repeats command= for each argument and escapes them', () => {
    const u = new URL(execPath('ns', 'pod', ['sh', '-c', 'a&b=c d'], false), 'http://x')
    expect(u.searchParams.getAll('command')).toEqual(['sh', '-c', 'a&b=c d'])
    expect(Object.fromEntries([...u.searchParams].filter(([k]) => k !== 'command'))).toEqual({container: 'sandbox', stdin: 'false', stdout: 'true', stderr: 'true', tty: 'false'})
  })
})

describe('describeWsError', () => {
  it('reads Errors and ws ErrorEvents, and names refused upgrades', () => {
    expect(describeWsError(new Error('Unexpected server response: 404'))).toBe('the API server answered HTTP 404 (no such pod: is the VM still running?)')
    expect(describeWsError({type: 'error', message: 'Unexpected server response: 403', error: new Error('Unexpected server response: 403')})).toBe('the API server answered HTTP 403 (Forbidden)')
    expect(describeWsError({type: 'error', error: new Error('connect ECONNREFUSED 127.0.0.1:1')})).toBe('connect ECONNREFUSED 127.0.0.1:1')
    expect(describeWsError({})).not.toBe('[object Object]')
  })
})
