/**
 * `agent mcp` driven by the official MCP SDK's own Client: over a real stdio transport (the
 * built CLI as a child process, as Claude Desktop, Claude Code or Cursor start it) and over
 * Streamable HTTP against a real `agent serve` at /mcp. Real gVisor sandboxes from the shared
 * test images.
 */
import {Client} from '@modelcontextprotocol/sdk/client/index.js'
import {StdioClientTransport} from '@modelcontextprotocol/sdk/client/stdio.js'
import {StreamableHTTPClientTransport} from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type {CallToolResult} from '@modelcontextprotocol/sdk/types.js'
import {execa, type ResultPromise} from 'execa'
import {mkdtempSync, readFileSync, rmSync, symlinkSync} from 'node:fs'
import {freePort} from '../helpers/ports.js'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {AGENT_BIN, ROOT, agentIn, tempState} from '../helpers/agent.js'
import {waitUntil} from '../helpers/wait.js'

const TOOLS = ['run_code', 'create_sandbox', 'exec', 'write_file', 'read_file', 'list_sandboxes', 'destroy_sandbox', 'list_languages']
const CALL = {timeout: 170_000}

const st = tempState('agent-mcp-')
const a = agentIn(st.env)

interface Conn {
  client: Client
  call(name: string, args?: Record<string, unknown>): Promise<CallToolResult>
  stderr(): string
  close(): Promise<void>
}

function baseEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v
  return {...env, ...st.env, NO_COLOR: '1', ...extra}
}

async function wrap(client: Client, stderr: () => string): Promise<Conn> {
  return {
    client,
    call: async (name, args = {}) => (await client.callTool({name, arguments: args}, undefined, CALL)) as CallToolResult,
    stderr,
    close: () => client.close(),
  }
}

/** `agent mcp ARGS` started by the SDK's stdio client transport. */
async function stdio(args: string[] = [], opts: {command?: string; commandArgs?: string[]; env?: Record<string, string>} = {}): Promise<Conn> {
  const transport = new StdioClientTransport({
    command: opts.command ?? process.execPath,
    args: opts.commandArgs ?? [AGENT_BIN, 'mcp', ...args],
    env: baseEnv(opts.env),
    stderr: 'pipe',
  })
  let log = ''
  transport.stderr?.on('data', (b: Buffer) => (log += b.toString()))
  const client = new Client({name: 'agent-e2e', version: '1.0.0'})
  await client.connect(transport)
  return wrap(client, () => log)
}

const text = (r: CallToolResult) => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n')
const vmList = async (stateEnv = st.env) => JSON.parse((await agentIn(stateEnv)(['vm', 'list', '--all', '--json'])).stdout) as {id: string; status: string; network: string; memoryMib: number}[]

afterAll(async () => {
  await a(['vm', 'clean', '--all'])
  st.cleanup()
})

describe('agent mcp over stdio', () => {
  let s: Conn

  beforeAll(async () => {
    s = await stdio()
  })
  afterAll(async () => {
    await s?.close()
  })

  it('lists exactly the eight tools, each with a JSON schema for its input and its result', async () => {
    const {tools} = await s.client.listTools()
    expect(tools.map((t) => t.name).sort()).toEqual([...TOOLS].sort())
    for (const t of tools) {
      expect(t.inputSchema.type).toBe('object')
      expect(t.inputSchema.additionalProperties).toBe(false)
      expect(t.outputSchema?.type).toBe('object')
      expect(t.description?.length).toBeGreaterThan(20)
    }
    const byName = Object.fromEntries(tools.map((t) => [t.name, t]))
    expect(byName.run_code.inputSchema.required).toEqual(['language', 'code'])
    expect(byName.exec.inputSchema.required).toEqual(['sandbox_id', 'command'])
    expect(Object.keys(byName.create_sandbox.inputSchema.properties ?? {}).sort()).toEqual(['cpus', 'language', 'memory_mib', 'network', 'ttl_seconds'])
    expect(byName.destroy_sandbox.annotations?.destructiveHint).toBe(true)
    expect(byName.list_sandboxes.annotations?.readOnlyHint).toBe(true)
    expect(s.client.getServerVersion()?.name).toBe('agent')
  })

  it('list_languages comes from the installed runtime plugins', async () => {
    const r = await s.call('list_languages')
    expect(r.isError).toBeFalsy()
    const langs = (r.structuredContent as {languages: {language: string; versions: string[]; file_extensions: string[]}[]}).languages
    expect(langs.map((l) => l.language)).toEqual(expect.arrayContaining(['python', 'node', 'ruby', 'golang']))
    expect(langs.find((l) => l.language === 'python')?.file_extensions).toContain('.py')
    expect(text(r)).toMatch(/python \(also .*\): versions/)
  })

  it('run_code runs python in a fresh sandbox with no network, and cleans it afterwards', async () => {
    const r = await s.call('run_code', {language: 'python', code: 'import sys, socket\nprint("hello from python", sys.version_info[0])\nprint([n for _, n in socket.if_nameindex()])\nprint("warn", file=sys.stderr)'})
    expect(r.isError).toBeFalsy()
    expect(r.structuredContent).toMatchObject({language: 'python', exitCode: 0, timedOut: false, oom: false, stdoutTruncated: false, stderr: 'warn\n'})
    const out = (r.structuredContent as {stdout: string}).stdout
    expect(out).toMatch(/^hello from python 3\n/)
    expect(out).not.toMatch(/eth|ens|veth/) // loopback only
    expect((r.structuredContent as {durationMs: number}).durationMs).toBeGreaterThan(0)
    expect(text(r)).toMatch(/^python@[\d.]+: exit code 0 \(\d+ ms\)\n--- stdout ---\nhello from python 3/)
    expect(await vmList()).toEqual([])
    // A program that fails is a result (its exit code and traceback), not a tool error.
    const boom = await s.call('run_code', {language: 'python', code: 'def f():\n    return 1 / 0\nf()'})
    expect(boom.isError).toBeFalsy()
    expect(boom.structuredContent).toMatchObject({exitCode: 1, stderr: expect.stringContaining('ZeroDivisionError')})
  })

  it('run_code runs node (and an alias, and a version)', async () => {
    const r = await s.call('run_code', {language: 'node', code: 'const os = require("os"); console.log(["node", process.versions.node.split(".")[0] > 0, 6 * 7].join(" "))'})
    expect(r.isError).toBeFalsy()
    expect(r.structuredContent).toMatchObject({language: 'node', exitCode: 0, stdout: 'node true 42\n'})
    const js = await s.call('run_code', {language: 'javascript', code: 'console.log(typeof fetch)'})
    expect(js.structuredContent).toMatchObject({language: 'node', exitCode: 0})
    const py313 = await s.call('run_code', {language: 'python@3.13', code: 'import sys; print(sys.version_info[:2])'})
    expect(py313.structuredContent).toMatchObject({exitCode: 0, stdout: '(3, 13)\n', version: '3.13'})
  })

  it('a sandbox\'s whole life: create, list, write, exec, read, destroy', async () => {
    const c = await s.call('create_sandbox', {language: 'python', memory_mib: 256, ttl_seconds: 600})
    expect(c.isError).toBeFalsy()
    const sb = c.structuredContent as {sandbox_id: string; network: string; memory_mib: number; expires_at: string; status: string}
    expect(sb).toMatchObject({network: 'none', memory_mib: 256, status: 'running', language: 'python', kept_after_server_exit: false})
    expect(Date.parse(sb.expires_at) - Date.now()).toBeGreaterThan(500_000)
    const id = sb.sandbox_id
    expect(id).toMatch(/^python-[0-9a-f]{8}$/)
    // It is a VM of the same state, as `agent vm list` shows.
    expect(await vmList()).toMatchObject([{id, status: 'running', network: 'none', memoryMib: 256}])

    const listed = await s.call('list_sandboxes')
    expect((listed.structuredContent as {sandboxes: {sandbox_id: string}[]}).sandboxes.map((x) => x.sandbox_id)).toEqual([id])
    expect(text(listed)).toContain(id)

    const program = 'import os\nprint(os.getcwd(), os.environ["GREETING"], open("data.txt").read())\n'
    const w = await s.call('write_file', {sandbox_id: id, path: 'app/main.py', content: program})
    expect(w.structuredContent).toMatchObject({sandbox_id: id, path: '/root/app/main.py', bytes: Buffer.byteLength(program)})
    await s.call('write_file', {sandbox_id: id, path: '/root/app/data.txt', content: 'héllo'})
    const e = await s.call('exec', {sandbox_id: id, command: 'python3 main.py', workdir: '/root/app', env: {GREETING: 'hi'}})
    expect(e.isError).toBeFalsy()
    expect(e.structuredContent).toMatchObject({sandbox_id: id, exitCode: 0, stdout: '/root/app hi héllo\n', timedOut: false})
    // Files persist between calls; the default working directory is /root.
    const pwd = await s.call('exec', {sandbox_id: id, command: 'pwd; ls app; echo oops >&2; exit 3'})
    expect(pwd.structuredContent).toMatchObject({exitCode: 3, stdout: '/root\ndata.txt\nmain.py\n', stderr: 'oops\n'})
    expect(text(pwd)).toMatch(/^exit code 3/)

    const r = await s.call('read_file', {sandbox_id: id, path: 'app/data.txt'})
    expect(r.structuredContent).toMatchObject({path: '/root/app/data.txt', content: 'héllo', encoding: 'utf8', bytes: 6})
    expect(text(r)).toBe('héllo')
    // Binary content round-trips as base64; as text it is refused with a hint.
    const bin = Buffer.from([0, 1, 2, 0xff, 0xfe, 10])
    await s.call('write_file', {sandbox_id: id, path: '/tmp/b.bin', content: bin.toString('base64'), encoding: 'base64'})
    const rb = await s.call('read_file', {sandbox_id: id, path: '/tmp/b.bin', encoding: 'base64'})
    expect(rb.structuredContent).toMatchObject({bytes: 6, content: bin.toString('base64')})
    const asText = await s.call('read_file', {sandbox_id: id, path: '/tmp/b.bin'})
    expect(asText.isError).toBe(true)
    expect(text(asText)).toMatch(/not valid UTF-8.*\nHint: read it with encoding "base64"/s)

    // Paths are resolved inside the sandbox: climbing out lands on the sandbox's own files.
    const osr = await s.call('read_file', {sandbox_id: id, path: '../../../../../etc/os-release'})
    const inGuest = await s.call('exec', {sandbox_id: id, command: 'cat /etc/os-release'})
    expect((osr.structuredContent as {content: string}).content).toBe((inGuest.structuredContent as {stdout: string}).stdout)
    expect((osr.structuredContent as {content: string}).content).not.toBe(readFileSync('/etc/os-release', 'utf8'))
    await s.call('exec', {sandbox_id: id, command: 'ln -s / /root/hostroot'})
    const viaLink = await s.call('read_file', {sandbox_id: id, path: 'hostroot/etc/hostname'})
    expect((viaLink.structuredContent as {content: string}).content.trim()).toBe(id)
    const missing = await s.call('read_file', {sandbox_id: id, path: '/nope/missing.txt'})
    expect(missing).toMatchObject({isError: true})
    expect(text(missing)).toBe('Error: path not found: /nope/missing.txt')
    const dir = await s.call('read_file', {sandbox_id: id, path: '/etc'})
    expect(text(dir)).toBe('Error: path is a directory: /etc')

    const d = await s.call('destroy_sandbox', {sandbox_id: id})
    expect(d.structuredContent).toEqual({sandbox_id: id, destroyed: true})
    expect(await vmList()).toEqual([])
    const after = await s.call('exec', {sandbox_id: id, command: 'true'})
    expect(after.isError).toBe(true)
    expect(text(after)).toContain(`VM not found: "${id}"`)
    expect((await s.call('list_sandboxes')).structuredContent).toEqual({sandboxes: []})
  })

  it('answers bad arguments with tool errors carrying the CLI\'s messages, and keeps serving', async () => {
    const bad: [string, Record<string, unknown>, RegExp][] = [
      ['run_code', {language: 'python'}, /Input validation error.*code/],
      ['run_code', {language: 'python', code: 42}, /Input validation error.*expected string/],
      ['run_code', {language: 'python', code: 'print(1)', timeout_seconds: -1}, /Input validation error.*timeout_seconds/],
      ['run_code', {language: 'python', code: 'print(1)', timeout_seconds: 100_000}, /Input validation error.*timeout_seconds/],
      ['run_code', {language: 'python', code: 'print(1)', bogus: true}, /Input validation error.*bogus/],
      ['run_code', {language: 'cobol', code: 'x'}, /^Error: unknown language "cobol"\. Available: .*python.*\nHint: add a language with `agent plugins install/],
      ['run_code', {language: 'python@2.7', code: 'x'}, /^Error: unknown python version "2\.7"\. Known versions: /],
      ['create_sandbox', {language: 'python', network: 'allow_all'}, /^Error: network "allow_all" is not allowed: this MCP server was started without --allow-network.*\nHint: /],
      ['create_sandbox', {language: 'python', network: 'everything'}, /Input validation error.*network/],
      ['create_sandbox', {language: 'python', memory_mib: 1_000_000}, /Input validation error.*memory_mib/],
      ['exec', {sandbox_id: 'python-00000000', command: 'ls'}, /^Error: VM not found: "python-00000000"/],
      ['exec', {sandbox_id: '../etc', command: 'ls'}, /^Error: invalid VM id or name "\.\.\/etc"/],
      ['exec', {sandbox_id: 'python-00000000'}, /Input validation error.*command/],
      ['exec', {sandbox_id: 'python-00000000', command: 'ls', env: {'BAD NAME': 'x'}}, /Input validation error.*env/],
      ['write_file', {sandbox_id: 'python-00000000', path: 'x', content: 'y', encoding: 'latin1'}, /Input validation error.*encoding/],
      ['destroy_sandbox', {}, /Input validation error.*sandbox_id/],
      ['no_such_tool', {}, /Tool no_such_tool not found/],
    ]
    for (const [tool, args, want] of bad) {
      const r = await s.call(tool, args)
      expect(r.isError, `${tool} ${JSON.stringify(args)}`).toBe(true)
      expect(text(r), `${tool} ${JSON.stringify(args)}`).toMatch(want)
    }
    expect((await s.client.listTools()).tools).toHaveLength(8)
    expect(await vmList()).toEqual([])
  })

  it('acts only on sandboxes made through MCP, never on other VMs of the state', async () => {
    const created = await a(['vm', 'create', '--language', 'python'])
    expect(created.code).toBe(0)
    const id = created.stdout.trim()
    try {
      for (const [tool, args] of [
        ['exec', {sandbox_id: id, command: 'true'}],
        ['read_file', {sandbox_id: id, path: '/etc/hostname'}],
        ['destroy_sandbox', {sandbox_id: id}],
      ] as const) {
        const r = await s.call(tool, args)
        expect(r.isError).toBe(true)
        expect(text(r)).toMatch(/was not created through MCP, so MCP tools do not act on it\nHint: list_sandboxes/)
      }
      expect((await s.call('list_sandboxes')).structuredContent).toEqual({sandboxes: []})
      expect((await vmList()).map((v) => v.id)).toEqual([id])
    } finally {
      await a(['vm', 'clean', id])
    }
  })

  it('destroys its sandboxes when the client goes away', async () => {
    const other = await stdio()
    const c = await other.call('create_sandbox', {language: 'node'})
    const id = (c.structuredContent as {sandbox_id: string}).sandbox_id
    expect((await vmList()).map((v) => v.id)).toEqual([id])
    await other.close()
    expect(await waitUntil(async () => (await vmList()).length === 0, 20_000, 250)).toBe(true)
  })
})

describe('agent mcp limits', () => {
  let s: Conn

  beforeAll(async () => {
    s = await stdio(['--memory', '96', '--max-output', '2048', '--max-file-size', '4096', '--timeout', '20', '--max-timeout', '30', '--max-sandboxes', '2'])
  })
  afterAll(async () => {
    await s?.close()
  })

  it('kills a run at its timeout and says so', async () => {
    const t0 = Date.now()
    const r = await s.call('run_code', {language: 'python', code: 'import time\nprint("started", flush=True)\nwhile True:\n    time.sleep(0.1)', timeout_seconds: 2})
    expect(r.isError).toBeFalsy()
    expect(r.structuredContent).toMatchObject({exitCode: 124, timedOut: true, oom: false, stdout: 'started\n'})
    expect(text(r)).toContain('timed out after 2s: the command and all its children were killed (exit 124)')
    expect(Date.now() - t0).toBeLessThan(30_000)
    expect(await vmList()).toEqual([])
  })

  it('reports a run that goes past its memory limit as out of memory', async () => {
    const r = await s.call('run_code', {language: 'python', code: 'chunks = []\nwhile True:\n    chunks.append("x" * (8 << 20))', timeout_seconds: 30})
    expect(r.isError).toBeFalsy()
    expect(r.structuredContent).toMatchObject({exitCode: 137, oom: true, timedOut: false})
    expect(text(r)).toContain('ran out of memory: killed for exceeding the 96 MiB limit (exit 137)')
    expect(await vmList()).toEqual([])
  })

  it('caps output per stream with a clear marker', async () => {
    const r = await s.call('run_code', {language: 'python', code: 'import sys\nprint("a" * 10000)\nsys.stderr.write("b" * 100)'})
    const sc = r.structuredContent as {stdout: string; stderr: string; stdoutTruncated: boolean; stderrTruncated: boolean}
    expect(sc.stdoutTruncated).toBe(true)
    expect(sc.stderrTruncated).toBe(false)
    expect(sc.stdout).toBe(`${'a'.repeat(2048)}\n[agent: stdout truncated: only the first 2048 bytes are shown]`)
    expect(sc.stderr).toBe('b'.repeat(100))
    expect(text(r)).toContain('[agent: stdout truncated: only the first 2048 bytes are shown]')
  })

  it('refuses files above the size limit, and sandboxes above the count limit', async () => {
    const c = await s.call('create_sandbox', {language: 'python'})
    const id = (c.structuredContent as {sandbox_id: string}).sandbox_id
    const big = await s.call('write_file', {sandbox_id: id, path: 'big.txt', content: 'x'.repeat(5000)})
    expect(big.isError).toBe(true)
    expect(text(big)).toMatch(/^Error: content is 5000 bytes, above this server's 4096-byte limit for write_file\nHint: /)
    await s.call('exec', {sandbox_id: id, command: 'head -c 5000 /dev/zero > big.bin'})
    const rbig = await s.call('read_file', {sandbox_id: id, path: 'big.bin', encoding: 'base64'})
    expect(rbig.isError).toBe(true)
    expect(text(rbig)).toMatch(/^Error: file \/root\/big.bin is larger than this server's 4096-byte limit for read_file\nHint: /)
    const c2 = await s.call('create_sandbox', {language: 'python'})
    expect(c2.isError).toBeFalsy()
    const c3 = await s.call('create_sandbox', {language: 'python'})
    expect(c3.isError).toBe(true)
    expect(text(c3)).toMatch(/already holds 2 sandboxes, its limit \(--max-sandboxes 2\)\nHint: destroy a sandbox/)
    for (const x of [c, c2]) await s.call('destroy_sandbox', {sandbox_id: (x.structuredContent as {sandbox_id: string}).sandbox_id})
    expect(await vmList()).toEqual([])
  })
})

describe('agent mcp lifetimes', () => {
  it('destroys a sandbox at the end of its lifetime (--ttl)', async () => {
    const s = await stdio(['--ttl', '3'])
    try {
      const c = await s.call('create_sandbox', {language: 'python'})
      const {sandbox_id: id, expires_at} = c.structuredContent as {sandbox_id: string; expires_at: string}
      expect(Date.parse(expires_at) - Date.now()).toBeLessThanOrEqual(3000)
      expect((await vmList()).map((v) => v.id)).toEqual([id])
      const gone = await waitUntil(async () => (await vmList()).length === 0, 30_000, 250)
      expect(gone).toBe(true)
      expect((await s.call('list_sandboxes')).structuredContent).toEqual({sandboxes: []})
      const r = await s.call('exec', {sandbox_id: id, command: 'true'})
      expect(r.isError).toBe(true)
      expect(s.stderr()).toContain(`${id}: lifetime over, destroying the MCP sandbox`)
    } finally {
      await s.close()
    }
  })

  it('--keep leaves sandboxes after exit; the next server destroys them once their lifetime is over', async () => {
    const s = await stdio(['--keep', '--ttl', '4'])
    const c = await s.call('create_sandbox', {language: 'python'})
    const id = (c.structuredContent as {sandbox_id: string}).sandbox_id
    expect((c.structuredContent as {kept_after_server_exit: boolean}).kept_after_server_exit).toBe(true)
    await s.close()
    expect(await vmList()).toMatchObject([{id, status: 'running'}])
    await new Promise((r) => setTimeout(r, 4500))
    const next = await stdio()
    try {
      expect(await vmList()).toEqual([])
      expect(next.stderr()).toMatch(/cleaned 1 sandbox\(es\) left by MCP servers that died/)
    } finally {
      await next.close()
    }
  })

  it('cleans at the next start what a server killed with SIGKILL left behind', async () => {
    const child = execa(process.execPath, [AGENT_BIN, 'mcp'], {env: baseEnv(), stdin: 'pipe', stdout: 'pipe', stderr: 'pipe', reject: false})
    const send = (m: object) => child.stdin!.write(`${JSON.stringify(m)}\n`)
    let out = ''
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()))
    send({jsonrpc: '2.0', id: 1, method: 'initialize', params: {protocolVersion: '2025-06-18', capabilities: {}, clientInfo: {name: 'raw', version: '1'}}})
    send({jsonrpc: '2.0', method: 'notifications/initialized'})
    // Protocol abuse first: a line that is not JSON, arguments that are not an object.
    child.stdin!.write('{this is not json\n')
    send({jsonrpc: '2.0', id: 9, method: 'tools/call', params: {name: 'exec', arguments: 'not an object'}})
    send({jsonrpc: '2.0', id: 2, method: 'tools/call', params: {name: 'create_sandbox', arguments: {language: 'python'}}})
    expect(await waitUntil(() => out.includes('"id":2'), 60_000)).toBe(true)
    expect(out).toMatch(/"id":9/)
    // Every line on stdout is a JSON-RPC message.
    for (const line of out.trim().split('\n')) expect(JSON.parse(line).jsonrpc).toBe('2.0')
    child.kill('SIGKILL')
    await child
    expect(await vmList()).toHaveLength(1)
    const next = await stdio()
    try {
      expect(await vmList()).toEqual([])
    } finally {
      await next.close()
    }
  })
})

describe('the README\'s client configurations, as copied', () => {
  it('each JSON block of "Use it from an AI assistant" starts a working server', async () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
    const section = readme.split(/^## /m).find((s) => s.startsWith('Use it from an AI assistant'))
    expect(section, 'README section "Use it from an AI assistant"').toBeDefined()
    const blocks = [...section!.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => JSON.parse(m[1]) as {mcpServers: Record<string, {command?: string; args?: string[]; env?: Record<string, string>}>})
    const stdioConfigs = blocks.flatMap((b) => Object.values(b.mcpServers)).filter((c) => c.command)
    expect(stdioConfigs.length).toBeGreaterThanOrEqual(2)
    // `agent` on PATH is this checkout, as `npm link` (scripts/setup.sh) makes it.
    const bin = mkdtempSync(join(tmpdir(), 'agent-mcp-path-'))
    symlinkSync(AGENT_BIN, join(bin, 'agent'))
    try {
      for (const cfg of stdioConfigs) {
        const s = await stdio([], {command: cfg.command, commandArgs: cfg.args ?? [], env: {...cfg.env, PATH: `${bin}:${process.env.PATH}`}})
        try {
          const r = await s.call('run_code', {language: 'python', code: 'print(6 * 7)'})
          expect(r.structuredContent).toMatchObject({exitCode: 0, stdout: '42\n'})
        } finally {
          await s.close()
        }
      }
    } finally {
      rmSync(bin, {recursive: true, force: true})
    }
  })
})

describe('MCP over Streamable HTTP in agent serve', () => {
  let sst: ReturnType<typeof tempState>
  const API_KEY = 'mcp-test-key-0123456789abcdef'
  let proc: ResultPromise
  let url: string
  let out = ''

  async function http(key = API_KEY): Promise<Conn> {
    const transport = new StreamableHTTPClientTransport(new URL(`${url}/mcp`), {requestInit: {headers: {'X-API-Key': key}}})
    const client = new Client({name: 'agent-e2e-http', version: '1.0.0'})
    await client.connect(transport)
    return wrap(client, () => out)
  }

  beforeAll(async () => {
    sst = tempState('agent-mcp-serve-') // here, not at collection: a filtered run leaves no dir
    const port = await freePort()
    url = `http://127.0.0.1:${port}`
    proc = execa(process.execPath, [AGENT_BIN, 'serve', '--listen', `127.0.0.1:${port}`, '--socket', ''], {env: {...sst.env, AGENT_API_KEY: API_KEY, NO_COLOR: '1'}, reject: false, all: true})
    proc.all?.on('data', (b: Buffer) => (out += b.toString()))
    const up = await waitUntil(async () => (await fetch(`${url}/health`).catch(() => undefined))?.ok === true, 60_000)
    if (!up) throw new Error(`agent serve did not come up:\n${out}`)
  })

  afterAll(async () => {
    proc?.kill('SIGTERM')
    await proc
    if (!sst) return
    await agentIn(sst.env)(['vm', 'clean', '--all'])
    sst.cleanup()
  })

  it('is behind the API key', async () => {
    const res = await fetch(`${url}/mcp`, {method: 'POST', headers: {'content-type': 'application/json', accept: 'application/json, text/event-stream'}, body: '{}'})
    expect(res.status).toBe(401)
    await expect(http('wrong-key-0123456789abcdef')).rejects.toThrow(/401|Invalid API key/)
  })

  it('serves the same tools: list, run_code, a sandbox\'s life; its sandboxes go when the server stops', async () => {
    const s = await http()
    try {
      expect((await s.client.listTools()).tools.map((t) => t.name).sort()).toEqual([...TOOLS].sort())
      const r = await s.call('run_code', {language: 'python', code: 'print(sum(range(10)))'})
      expect(r.structuredContent).toMatchObject({exitCode: 0, stdout: '45\n'})
      const bad = await s.call('run_code', {language: 'cobol', code: 'x'})
      expect(bad.isError).toBe(true)
      expect(text(bad)).toMatch(/unknown language "cobol"/)
      const c = await s.call('create_sandbox', {language: 'node'})
      const id = (c.structuredContent as {sandbox_id: string}).sandbox_id
      await s.call('write_file', {sandbox_id: id, path: 'a.js', content: 'console.log("via http")'})
      expect((await s.call('exec', {sandbox_id: id, command: 'node a.js'})).structuredContent).toMatchObject({exitCode: 0, stdout: 'via http\n'})
      // Stateless: a second connection sees the same sandboxes.
      const s2 = await http()
      expect((await s2.call('list_sandboxes')).structuredContent).toMatchObject({sandboxes: [{sandbox_id: id}]})
      await s2.close()
      // It is not an E2B sandbox the SDK could reach, but it is a VM of the serve's state.
      expect((await vmList(sst.env)).map((v) => v.id)).toEqual([id])
      const other = await s.call('create_sandbox', {language: 'python'})
      expect(other.isError).toBeFalsy()
      await s.call('destroy_sandbox', {sandbox_id: id})
      expect((await vmList(sst.env)).map((v) => v.id)).toEqual([(other.structuredContent as {sandbox_id: string}).sandbox_id])
    } finally {
      await s.close()
    }
    proc.kill('SIGTERM')
    await proc
    expect(await vmList(sst.env)).toEqual([])
  })
})
