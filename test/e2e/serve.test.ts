/**
 * `agent serve` against the real E2B SDKs (`e2b`, `@e2b/code-interpreter`, pinned devDependencies):
 * a real server child process on a fresh state dir, real gVisor sandboxes from the shared images.
 */
import {freePort} from '../helpers/ports.js'
import {existsSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {agentIn, tempState} from '../helpers/agent.js'
import {startServe, type ServeChild} from '../helpers/serve.js'
import {waitUntil} from '../helpers/wait.js'

const st = tempState('agent-serve-')
const a = agentIn(st.env)
const API_KEY = 'test-key-0123456789abcdef'

type Server = ServeChild

function startServer(port: number, extra: string[] = [], env: Record<string, string> = {}): Promise<Server> {
  return startServe({port, env: {...st.env, ...env}, apiKey: API_KEY, extra})
}

let server: Server
let port: number
let E2B: typeof import('e2b')

beforeAll(async () => {
  port = await freePort()
  server = await startServer(port)
  process.env.E2B_API_URL = server.url
  process.env.E2B_SANDBOX_URL = server.url
  process.env.E2B_API_KEY = API_KEY
  E2B = await import('e2b')
})

afterAll(async () => {
  server?.proc.kill('SIGTERM')
  await server?.proc
  await a(['vm', 'clean', '--all'])
  st.cleanup()
})

const vmList = async () => JSON.parse((await a(['vm', 'list', '--all', '--json'])).stdout) as {id: string; status: string}[]

describe('agent serve: server', () => {
  it('answers /health without a key, refuses a wrong or missing key with E2B\'s body, and keeps its socket private', async () => {
    expect((await fetch(`${server.url}/health`)).status).toBe(200)
    const missing = await fetch(`${server.url}/v2/sandboxes`)
    expect(missing.status).toBe(401)
    expect(await missing.json()).toMatchObject({code: 401})
    await expect(E2B.Sandbox.create('python', {apiKey: 'wrong-key-0123456789'})).rejects.toBeInstanceOf(E2B.AuthenticationError)
    const sock = join(st.dir, 'agent.sock')
    expect(existsSync(sock)).toBe(true)
    expect(statSync(sock).mode & 0o777).toBe(0o600)
  })

  it('refuses a second server on the same state dir, and a non-loopback address without a configured key', async () => {
    const second = await a(['serve', '--listen', `127.0.0.1:${await freePort()}`], {env: {AGENT_API_KEY: API_KEY}, timeoutMs: 60_000})
    expect(second.code).not.toBe(0)
    expect(second.stderr).toMatch(/another agent serve \(pid \d+\) already owns the state dir/)
    const other = tempState('agent-serve-open-')
    try {
      const open = await agentIn(other.env)(['serve', '--listen', `0.0.0.0:${await freePort()}`], {timeoutMs: 60_000})
      expect(open.code).not.toBe(0)
      expect(open.stderr).toMatch(/not a loopback address/)
    } finally {
      other.cleanup()
    }
  })

  it('answers 404 with E2B\'s body for an unknown sandbox, 400 for malformed JSON and an unknown template, 413 for an oversized body', async () => {
    const h = {'x-api-key': API_KEY, 'content-type': 'application/json'}
    const gone = await fetch(`${server.url}/sandboxes/python-00000000`, {headers: h})
    expect(gone.status).toBe(404)
    expect(await gone.json()).toMatchObject({code: 404, message: expect.stringContaining('python-00000000')})
    expect(await E2B.Sandbox.kill('python-00000000')).toBe(false)
    const bad = await fetch(`${server.url}/v2/sandboxes`, {method: 'POST', headers: h, body: '{"templateID": '})
    expect(bad.status).toBe(400)
    const unknown = await fetch(`${server.url}/v2/sandboxes`, {method: 'POST', headers: h, body: JSON.stringify({templateID: 'cobol'})})
    expect(unknown.status).toBe(400)
    expect((await unknown.json()).message).toMatch(/unknown language "cobol"\. Available: .*python/)
    const big = await fetch(`${server.url}/v2/sandboxes`, {method: 'POST', headers: h, body: JSON.stringify({templateID: 'python', metadata: {x: 'y'.repeat(2 * 1024 * 1024)}})})
    expect(big.status).toBe(413)
    // Nothing was half-created by the refused requests.
    expect(await vmList()).toEqual([])
  })
})

describe('agent serve: a python sandbox through the e2b SDK', () => {
  let sbx: InstanceType<typeof E2B.Sandbox>

  beforeAll(async () => {
    sbx = await E2B.Sandbox.create('python', {timeoutMs: 600_000, envs: {SANDBOX_VAR: 'from-create'}, metadata: {suite: 'serve'}})
  })

  it('is a VM of the same state: vm list shows it', async () => {
    expect((await vmList()).find((v) => v.id === sbx.sandboxId)?.status).toBe('running')
  })

  it('runs commands with stdout, stderr, exit code, envs and cwd', async () => {
    const r = await sbx.commands.run('echo out; echo err >&2; echo "$SANDBOX_VAR $CMD_VAR"; pwd', {envs: {CMD_VAR: 'from-run'}})
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toBe('out\nfrom-create from-run\n/home/user\n')
    expect(r.stderr).toBe('err\n')
    expect((await sbx.commands.run('pwd', {cwd: '/tmp'})).stdout).toBe('/tmp\n')
    const failed = await sbx.commands.run('echo before; exit 3').catch((e: unknown) => e)
    expect(failed).toBeInstanceOf(E2B.CommandExitError)
    expect((failed as InstanceType<typeof E2B.CommandExitError>).exitCode).toBe(3)
    expect((failed as InstanceType<typeof E2B.CommandExitError>).stdout).toBe('before\n')
  })

  it('streams onStdout as output is produced, and waits for a background command', async () => {
    const seen: {at: number; data: string}[] = []
    const t0 = Date.now()
    const h = await sbx.commands.run('for i in 1 2 3; do echo line $i; sleep 0.4; done', {background: true, onStdout: (d) => void seen.push({at: Date.now() - t0, data: d})})
    const r = await h.wait()
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toBe('line 1\nline 2\nline 3\n')
    expect(seen.map((s) => s.data).join('')).toBe('line 1\nline 2\nline 3\n')
    // Streamed, not delivered at the end: the first line arrived well before the last.
    expect(seen.at(-1)!.at - seen[0].at).toBeGreaterThan(500)
  })

  it('kills a running command, and keeps a process going after its client disconnects', async () => {
    const h = await sbx.commands.run('sleep 30', {background: true})
    expect(await sbx.commands.kill(h.pid)).toBe(true)
    await expect(h.wait()).rejects.toBeInstanceOf(E2B.CommandExitError)
    // Start a writer, drop the client, then check the process finished its work anyway.
    const w = await sbx.commands.run('sleep 1; echo done > /tmp/survived', {background: true})
    await w.disconnect()
    expect(await waitUntil(async () => (await sbx.files.exists('/tmp/survived')), 20_000)).toBe(true)
  })

  it('writes and reads text and binary files, lists, makes dirs, tells what exists, and raises on a missing file', async () => {
    await sbx.files.write('/home/user/hello.txt', 'hello from the SDK')
    expect(await sbx.files.read('/home/user/hello.txt')).toBe('hello from the SDK')
    const bytes = new Uint8Array(256).map((_, i) => i)
    await sbx.files.write('data/blob.bin', bytes.buffer) // relative to the user's home
    expect(Buffer.from(await sbx.files.read('/home/user/data/blob.bin', {format: 'bytes'}))).toEqual(Buffer.from(bytes))
    const names = (await sbx.files.list('/home/user')).map((e) => `${e.name}:${e.type}`)
    expect(names).toEqual(expect.arrayContaining(['hello.txt:file', 'data:dir']))
    expect(await sbx.files.makeDir('/home/user/newdir/sub')).toBe(true)
    expect(await sbx.files.makeDir('/home/user/newdir/sub')).toBe(false)
    expect(await sbx.files.exists('/home/user/newdir/sub')).toBe(true)
    expect(await sbx.files.exists('/home/user/nothing-here')).toBe(false)
    await expect(sbx.files.read('/home/user/nothing-here')).rejects.toBeInstanceOf(E2B.FileNotFoundError)
    // The command sees what the file API wrote: one filesystem, the guest's.
    expect((await sbx.commands.run('cat /home/user/hello.txt')).stdout).toBe('hello from the SDK')
  })

  it('confines paths to the sandbox: ../ and absolute paths stay in the guest', async () => {
    const marker = join(st.dir, 'host-marker')
    await sbx.files.write(`../../../../..${marker}`, 'guest')
    expect(existsSync(marker)).toBe(false)
    expect(await sbx.files.read(marker)).toBe('guest')
    await expect(sbx.files.read(join(st.dir, 'api-key'))).rejects.toBeInstanceOf(E2B.FileNotFoundError)
  })

  it('reports isRunning, lists with metadata, sets the timeout, and connects by id', async () => {
    expect(await sbx.isRunning()).toBe(true)
    const listed = await E2B.Sandbox.list({query: {metadata: {suite: 'serve'}}}).nextItems()
    expect(listed.map((s) => s.sandboxId)).toContain(sbx.sandboxId)
    expect(listed.find((s) => s.sandboxId === sbx.sandboxId)?.metadata).toEqual({suite: 'serve'})
    expect(await E2B.Sandbox.list({query: {metadata: {suite: 'other'}}}).nextItems()).toEqual([])
    await sbx.setTimeout(900_000)
    const info = await sbx.getInfo()
    expect(info.endAt.getTime() - Date.now()).toBeGreaterThan(800_000)
    const again = await E2B.Sandbox.connect(sbx.sandboxId)
    expect((await again.commands.run('echo via connect')).stdout).toBe('via connect\n')
  })

  it('kills the sandbox: the VM is gone and isRunning says so', async () => {
    expect(await sbx.kill()).toBe(true)
    expect(await sbx.isRunning()).toBe(false)
    expect((await vmList()).find((v) => v.id === sbx.sandboxId)).toBeUndefined()
  })
})

describe('agent serve: templates, lifetimes and CLI VMs', () => {
  it('creates a sandbox per language template, and base is python', async () => {
    for (const [tpl, cmd, want] of [
      ['base', 'python3 -c "print(6*7)"', '42\n'],
      ['node', 'node -e "console.log(6*7)"', '42\n'],
      ['ruby', 'ruby -e "puts 6*7"', '42\n'],
      ['golang', 'go version', 'go version'],
    ] as const) {
      const s = await E2B.Sandbox.create(tpl, {timeoutMs: 120_000})
      try {
        expect((await s.commands.run(cmd)).stdout, tpl).toContain(want)
      } finally {
        await s.kill()
      }
    }
  })

  it('kills a sandbox when its lifetime ends', async () => {
    const s = await E2B.Sandbox.create('python', {timeoutMs: 3_000})
    expect(await s.isRunning()).toBe(true)
    expect(await waitUntil(async () => !(await s.isRunning()), 30_000)).toBe(true)
    expect(await waitUntil(async () => !(await vmList()).some((v) => v.id === s.sandboxId), 30_000)).toBe(true)
  })

  it('reaches a VM created with the CLI by its id', async () => {
    const id = (await a(['vm', 'create', '--language', 'python'])).stdout.trim()
    expect(id).toMatch(/^python-[0-9a-f]{8}$/)
    const s = await E2B.Sandbox.connect(id)
    expect((await s.commands.run('echo from the api')).stdout).toBe('from the api\n')
    expect((await E2B.Sandbox.list().nextItems()).map((x) => x.sandboxId)).toContain(id)
    expect(await s.kill()).toBe(true)
  })
})

describe('agent serve: code interpreter', () => {
  it('keeps state between cells and returns an exception as an error', async () => {
    const {Sandbox} = await import('@e2b/code-interpreter')
    const s = await Sandbox.create({timeoutMs: 120_000})
    try {
      const first = await s.runCode('x = 41\nprint("hello")\nx + 1')
      expect(first.text).toBe('42')
      expect(first.logs.stdout).toEqual(['hello\n'])
      expect(first.error).toBeUndefined()
      expect((await s.runCode('x * 2')).text).toBe('82')
      const boom = await s.runCode('def f():\n    return 1 / 0\nf()')
      expect(boom.error?.name).toBe('ZeroDivisionError')
      expect(boom.error?.value).toBe('division by zero')
      expect(boom.error?.traceback).toContain('1 / 0')
      // A new context has its own state.
      const ctx = await s.createCodeContext()
      expect((await s.runCode('x', {context: ctx})).error?.name).toBe('NameError')
    } finally {
      await s.kill()
    }
  })
})

describe('agent serve: crash safety', () => {
  it('loses no sandbox to kill -9, and the next server adopts it and re-arms its lifetime', async () => {
    const s = await E2B.Sandbox.create('python', {timeoutMs: 25_000})
    server.proc.kill('SIGKILL')
    await server.proc
    expect((await vmList()).find((v) => v.id === s.sandboxId)?.status).toBe('running')
    server = await startServer(port)
    expect(server.output()).toMatch(/adopted 1 sandbox/)
    expect((await s.commands.run('echo still here')).stdout).toBe('still here\n')
    // The lifetime set before the crash still ends the sandbox.
    expect(await waitUntil(async () => !(await vmList()).some((v) => v.id === s.sandboxId), 60_000)).toBe(true)
  })
})
