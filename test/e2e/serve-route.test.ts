/**
 * The CLI's route through a running `agent serve` (<state>/serve.sock): with a real server on a
 * real gVisor and runc VM, the same commands with the route (default) and without it
 * (AGENT_SERVE_ROUTE=off) print the same bytes and exit the same; the server's debug line proves
 * which way each went. Fallback: a stale socket, a server of another state dir, a killed server.
 */
import {execa} from 'execa'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {AGENT_BIN, agentIn, tempState, type AgentResult, type RunOptions} from '../helpers/agent.js'
import {freePort} from '../helpers/ports.js'
import {startServe, type ServeChild} from '../helpers/serve.js'
import {waitUntil} from '../helpers/wait.js'

const st = tempState('agent-route-')
const a = agentIn(st.env)
const API_KEY = 'route-key-0123456789abcdef'
const vms: Record<'gvisor' | 'runc', string> = {gvisor: '', runc: ''}
let server: ServeChild

const start = async () => startServe({port: await freePort(), env: st.env, apiKey: API_KEY, extra: ['--log-level', 'debug']})
/** Commands the server has run for CLI clients (its debug line per request). */
const served = (s: ServeChild = server) => (s.output().match(/serve route: vm \w+ \(request \d+\)/g) ?? []).length
/** durationMs is the only field that may differ between two runs of the same command. */
const stable = (r: AgentResult) => ({code: r.code, stdout: r.stdout.replace(/"durationMs": \d+/g, '"durationMs": N'), stderr: r.stderr})

/** Without the server: the CLI's fast path (no oclif, src/cli/local-command.ts), and oclif's. */
const PLAIN_WAYS = [{AGENT_SERVE_ROUTE: 'off'}, {AGENT_SERVE_ROUTE: 'off', AGENT_FAST_PATH: 'off'}]

/**
 * Runs args through the server, then without it both ways (PLAIN_WAYS); asserts only the first
 * was routed, and that all three print the same bytes and exit the same.
 */
async function both(args: string[], opts: RunOptions = {}): Promise<{routed: AgentResult; plain: AgentResult}> {
  const n = served()
  const routed = await a(args, opts)
  expect(served(), `routed: ${args.join(' ')}\n${routed.stderr}`).toBe(n + 1)
  const [plain, oclif] = [await a(args, {...opts, env: {...opts.env, ...PLAIN_WAYS[0]}}), await a(args, {...opts, env: {...opts.env, ...PLAIN_WAYS[1]}})]
  expect(served(), 'AGENT_SERVE_ROUTE=off is not routed').toBe(n + 1)
  expect(stable(routed)).toEqual(stable(plain!))
  expect(stable(oclif!), 'AGENT_FAST_PATH=off').toEqual(stable(plain!))
  return {routed, plain: plain!}
}

beforeAll(async () => {
  for (const l of ['gvisor', 'runc'] as const) {
    const r = await a(['vm', 'create', '--language', 'python', '--mem', '128', '--launcher', l])
    expect(r.code, r.stderr).toBe(0)
    vms[l] = r.stdout.trim()
  }
  server = await start()
})

afterAll(async () => {
  server?.proc.kill('SIGTERM')
  await server?.proc
  await a(['vm', 'clean', '--all'], {env: {AGENT_SERVE_ROUTE: 'off'}})
  st.cleanup()
})

describe.each(['gvisor', 'runc'] as const)('vm exec and vm run through agent serve (%s)', (l) => {
  it('a failing command: same stdout, stderr and exit code', async () => {
    const {routed} = await both(['vm', 'exec', '--vm', vms[l], '--cmd', 'echo out; echo err >&2; exit 3'])
    expect(routed).toMatchObject({code: 3, stdout: 'out\n', stderr: 'err\n'})
  })

  it('--timeout kills the command: exit 124 and the same explanation', async () => {
    const {routed} = await both(['vm', 'exec', '--vm', vms[l], '--timeout', '1', '--', 'sleep', '10'])
    expect(routed.code).toBe(124)
    expect(routed.stderr).toMatch(/timed out after 1s/)
  })

  it('--json: the same document, success and failure', async () => {
    const ok = await both(['vm', 'exec', '--vm', vms[l], '--json', '--', 'python3', '-c', 'print(6*7)'])
    expect(ok.routed.code).toBe(0)
    expect(JSON.parse(ok.routed.stdout)).toMatchObject([{id: vms[l], exitCode: 0, stdout: '42\n'}])
    const bad = await both(['vm', 'exec', '--vm', vms[l], '--json', '--cmd', 'echo no >&2; exit 5'])
    expect(bad.routed.code).toBe(5)
    expect(JSON.parse(bad.routed.stdout)).toMatchObject([{exitCode: 5, stderr: 'no\n'}])
  })

  it('piped stdin reaches the command whole (past the 256 KiB window)', async () => {
    const input = Array.from({length: 200_000}, (_, i) => `line ${i}`).join('\n') + '\n'
    const {routed} = await both(['vm', 'exec', '--vm', vms[l], '--', 'sh', '-c', 'wc -c; echo done'], {input})
    expect(routed.stdout).toBe(`${Buffer.byteLength(input)}\ndone\n`)
    const cat = await both(['vm', 'exec', '--vm', vms[l], '--', 'cat'], {input: 'hello\nworld\n'})
    expect(cat.routed.stdout).toBe('hello\nworld\n')
  })

  it('a reader that goes away (| head -2): the command runs on to its timeout, as without a server', async () => {
    const results = []
    for (const env of [{}, ...PLAIN_WAYS]) {
      const n = served()
      const r = await execa('bash', ['-c', `"${process.execPath}" "${AGENT_BIN}" vm exec --vm ${vms[l]} --timeout 2 -- sh -c yes | head -2; echo "agent exit \${PIPESTATUS[0]}" >&2`], {env: {...st.env, NO_COLOR: '1', ...env}, reject: false})
      expect(served()).toBe('AGENT_SERVE_ROUTE' in env ? n : n + 1)
      results.push({stdout: r.stdout, stderr: r.stderr})
    }
    expect(results[0]).toEqual(results[1])
    expect(results[2], 'AGENT_FAST_PATH=off').toEqual(results[1])
    expect(results[0]!.stdout).toBe('y\ny')
    expect(results[0]!.stderr).toMatch(/timed out after 2s and was killed \(exit 124\)\nagent exit 124$/)
  })

  it('a client that stops reading holds the guest back: the server does not buffer its output', async () => {
    const progress = `/tmp/bp-progress-${Date.now()}`
    // 64 MiB in 1 MiB writes, counting each write done.
    const cmd = `for i in $(seq 64); do head -c 1048576 /dev/zero; echo $i > ${progress}; done`
    const read = async () => Number((await a(['vm', 'exec', '--vm', vms[l], '--cmd', `cat ${progress} 2>/dev/null || echo 0`], {env: {AGENT_SERVE_ROUTE: 'off'}})).stdout.trim())
    const n = served()
    const c = execa(process.execPath, [AGENT_BIN, 'vm', 'exec', '--vm', vms[l], '--timeout', '300', '--cmd', cmd], {env: {...st.env, NO_COLOR: '1'}, reject: false, stdin: 'ignore', stdout: 'ignore'})
    expect(await waitUntil(() => served() === n + 1, 30_000)).toBe(true)
    c.kill('SIGSTOP')
    try {
      // Until the count stands still (held) or reaches 64 (nothing held it).
      let last = -1
      let same = 0
      for (let i = 0; i < 120 && same < 3 && last < 64; i++) {
        const now = await read()
        same = now === last ? same + 1 : 0
        last = now
        await new Promise((r) => setTimeout(r, 500))
      }
      expect(last, 'MiB the guest wrote while its client read nothing').toBeLessThan(64)
    } finally {
      c.kill('SIGCONT')
    }
    const r = await c
    expect(r.exitCode, String(r.stderr)).toBe(0)
    expect(await read()).toBe(64)
  })

  it('vm run and --hello', async () => {
    const run = await both(['vm', 'run', '--vm', vms[l], '--', 'python3', '-c', 'import sys; print(6*7); sys.exit(4)'])
    expect(run.routed).toMatchObject({code: 4, stdout: '42\n'})
    const hello = await both(['vm', 'exec', '--vm', vms[l], '--hello'])
    expect(hello.routed.code).toBe(0)
    expect(hello.routed.stdout).not.toBe('')
  })
})

/** The files `agent <args>` loaded (an ESM loader hook), and how it ended. */
async function traced(args: string[], env: Record<string, string> = {}): Promise<{files: string[]; code: number | undefined; stdout: string; stderr: string}> {
  const dir = mkdtempSync(join(tmpdir(), 'agent-route-trace-'))
  try {
    const out = join(dir, 'loaded.txt')
    const hook = `import {appendFileSync} from 'node:fs'\nexport async function load(url, context, next) { appendFileSync(${JSON.stringify(out)}, url + '\\n'); return next(url, context) }`
    writeFileSync(join(dir, 'trace.mjs'), `import {register} from 'node:module'\nregister('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}))\n`)
    writeFileSync(out, '')
    const r = await execa(process.execPath, ['--import', join(dir, 'trace.mjs'), AGENT_BIN, ...args], {env: {...st.env, NO_COLOR: '1', ...env}, reject: false, stdin: 'ignore'})
    return {files: readFileSync(out, 'utf8').split('\n').filter((u) => u.startsWith('file:')), code: r.exitCode, stdout: r.stdout, stderr: r.stderr}
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}

describe('what a routed command loads', () => {
  it('nothing but bin/run.js, src/fast and node builtins: no oclif, no database, no launcher code', async () => {
    const n = served()
    const {files, code, stdout, stderr} = await traced(['vm', 'exec', '--vm', vms.runc, '--cmd', 'echo traced'])
    expect(code, stderr).toBe(0)
    expect(stdout).toBe('traced')
    expect(served()).toBe(n + 1)
    expect(files.some((u) => u.endsWith('/dist/fast/serve-route.js')), files.join('\n')).toBe(true)
    expect(files.filter((u) => !/\/bin\/run\.js$|\/dist\/fast\/[a-z-]+\.js$/.test(u))).toEqual([])
  })

  it('without a server, the fast path runs the command here without oclif; AGENT_FAST_PATH=off goes through it', async () => {
    for (const l of ['gvisor', 'runc'] as const) {
      const fast = await traced(['vm', 'exec', '--vm', vms[l], '--cmd', 'echo here'], {AGENT_SERVE_ROUTE: 'off'})
      expect(fast, fast.stderr).toMatchObject({code: 0, stdout: 'here'})
      expect(fast.files.some((u) => u.endsWith('/dist/cli/local-command.js'))).toBe(true)
      expect(fast.files.some((u) => u.endsWith('/dist/launchers/guest-channel.js'))).toBe(true) // it did run the exec
      expect(fast.files.filter((u) => /\/dist\/vendor\/oclif-core\.js$|\/dist\/commands\//.test(u))).toEqual([])
      const oclif = await traced(['vm', 'exec', '--vm', vms[l], '--cmd', 'echo here'], {AGENT_SERVE_ROUTE: 'off', AGENT_FAST_PATH: 'off'})
      expect(oclif).toMatchObject({code: 0, stdout: 'here'})
      expect(oclif.files.some((u) => u.endsWith('/dist/commands/vm/exec.js'))).toBe(true)
    }
  })
})

describe('concurrent clients', () => {
  it('each gets its own output and diagnostics, nothing of the others\'', async () => {
    const n = served()
    const runs = await Promise.all(
      [0, 1, 2, 3, 4, 5].map((i) =>
        i % 2
          ? a(['vm', 'exec', '--vm', i < 3 ? vms.runc : vms.gvisor, '--timeout', '1', '--cmd', `echo out${i}; echo err${i} >&2; sleep 5`])
          : a(['vm', 'exec', '--vm', i < 3 ? vms.runc : vms.gvisor, '--cmd', `echo out${i}; echo err${i} >&2; exit ${i + 10}`]),
      ),
    )
    expect(served()).toBe(n + 6)
    runs.forEach((r, i) => {
      expect(r.stdout).toBe(`out${i}\n`)
      if (i % 2) {
        expect(r.code).toBe(124)
        expect(r.stderr).toMatch(new RegExp(`^err${i}\nagent: error: command in python-[0-9a-f]+ timed out after 1s and was killed \\(exit 124\\)\n$`))
      } else expect(r).toMatchObject({code: i + 10, stderr: `err${i}\n`})
    })
  })
})

describe('errors and vm list through agent serve', () => {
  it('a missing VM: the same error, hint and exit code, with and without --json', async () => {
    const {routed} = await both(['vm', 'exec', '--vm', 'python-00000000', '--cmd', 'true'])
    expect(routed.code).toBe(3)
    expect(routed.stderr).toMatch(/^Error: .*python-00000000/)
    const json = await both(['vm', 'exec', '--vm', 'python-00000000', '--json', '--cmd', 'true'])
    expect(JSON.parse(json.routed.stdout)).toMatchObject({error: {kind: 'not_found', exitCode: 3}})
  })

  it('a bad -e value is the same usage error (exit 2)', async () => {
    const {routed} = await both(['vm', 'exec', '--vm', vms.runc, '-e', 'NOEQUALS', '--', 'true'])
    expect(routed.code).toBe(2)
  })

  it('vm list, its --all --json document and an empty --status', async () => {
    const table = await both(['vm', 'list'])
    expect(table.routed.stdout).toMatch(new RegExp(`${vms.gvisor}[^\\n]*gvisor[^\\n]*running`))
    const json = await both(['vm', 'list', '--all', '--json'])
    expect((JSON.parse(json.routed.stdout) as {id: string}[]).map((v) => v.id).sort()).toEqual([vms.gvisor, vms.runc].sort())
    const none = await both(['vm', 'list', '--status', 'failed'])
    expect(none.routed.stdout).toBe('No VMs.\n')
  })

  it('what the route does not take goes the normal way (-i, fan-out)', async () => {
    const n = served()
    const fan = await a(['vm', 'exec', '--vm', vms.runc, '--vm', vms.gvisor, '--', 'true'])
    expect(fan.code, fan.stderr).toBe(0)
    const i = await a(['vm', 'exec', '-i', '--vm', vms.runc, '--', 'cat'], {input: 'x'})
    expect(i).toMatchObject({code: 0, stdout: 'x'})
    expect(served()).toBe(n)
  })
})

describe('signals through agent serve', () => {
  const inGuest = async (pattern: string) => {
    const r = await a(['vm', 'exec', '--vm', vms.runc, '--', 'sh', '-c', 'for p in /proc/[0-9]*; do tr "\\0" " " < $p/cmdline 2>/dev/null; echo; done'], {env: {AGENT_SERVE_ROUTE: 'off'}})
    return r.stdout.split('\n').filter((line) => line.startsWith(pattern)).length
  }
  const client = (args: string[], env: Record<string, string> = {}) => {
    const p = execa(process.execPath, [AGENT_BIN, ...args], {env: {...st.env, NO_COLOR: '1', ...env}, reject: false, stdin: 'ignore', stripFinalNewline: false})
    let out = ''
    p.stdout?.on('data', (b: Buffer) => (out += b.toString()))
    return {p, out: () => out}
  }

  it('Ctrl-C stops the guest command as it does without a server (exit 130, same words)', async () => {
    const results = []
    for (const env of [{}, ...PLAIN_WAYS]) {
      const c = client(['vm', 'exec', '--vm', vms.runc, '--cmd', 'echo start; sleep 41.5; echo end'], env)
      expect(await waitUntil(() => c.out().includes('start'), 60_000)).toBe(true)
      c.p.kill('SIGINT')
      const r = await c.p
      results.push({code: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr)})
      expect(await waitUntil(async () => (await inGuest('sleep 41.5')) === 0, 30_000)).toBe(true)
    }
    expect(results[0]).toEqual(results[1])
    expect(results[2], 'AGENT_FAST_PATH=off').toEqual(results[1])
    expect(results[0]).toMatchObject({code: 130, stdout: 'start\n'})
    expect(results[0]!.stderr).toMatch(/SIGINT: stopping in-flight work/)
  })

  it('a guest that does not read its 4 MB of stdin: Ctrl-C still stops it, as without a server', async () => {
    const results = []
    for (const env of [{}, ...PLAIN_WAYS]) {
      const n = served()
      const p = execa(process.execPath, [AGENT_BIN, 'vm', 'exec', '--vm', vms.gvisor, '--cmd', 'echo start; sleep 43.5'], {env: {...st.env, NO_COLOR: '1', ...env}, reject: false, input: Buffer.alloc(4 << 20, 120), stripFinalNewline: false})
      let out = ''
      p.stdout?.on('data', (b: Buffer) => (out += b.toString()))
      expect(await waitUntil(() => out.includes('start'), 60_000)).toBe(true)
      expect(served()).toBe('AGENT_SERVE_ROUTE' in env ? n : n + 1)
      p.kill('SIGINT')
      const r = await p
      results.push({code: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr)})
    }
    expect(results[0]).toEqual(results[1])
    expect(results[2], 'AGENT_FAST_PATH=off').toEqual(results[1])
    expect(results[0]).toMatchObject({code: 130, stdout: 'start\n'})
  })

  it('a client killed outright (SIGKILL) ends its guest command', async () => {
    const n = served()
    const c = client(['vm', 'exec', '--vm', vms.runc, '--cmd', 'echo start; sleep 42.5'])
    expect(await waitUntil(() => c.out().includes('start'), 60_000)).toBe(true)
    expect(served()).toBe(n + 1)
    expect(await inGuest('sleep 42.5')).toBe(1)
    c.p.kill('SIGKILL')
    await c.p
    expect(await waitUntil(async () => (await inGuest('sleep 42.5')) === 0, 30_000)).toBe(true)
  })
})

describe('fallback: no server answers for this state dir', () => {
  it('a server of another state dir is refused (its socket linked in here): the command runs here', async () => {
    const other = tempState('agent-route-other-')
    try {
      symlinkSync(join(st.dir, 'serve.sock'), join(other.dir, 'serve.sock'))
      const b = agentIn(other.env)
      const n = served()
      const via = await b(['vm', 'list', '--all'])
      const plain = await b(['vm', 'list', '--all'], {env: {AGENT_SERVE_ROUTE: 'off'}})
      expect(via).toMatchObject({code: 0, stdout: 'No VMs.\n'})
      expect(stable(via)).toEqual(stable(plain))
      expect(served()).toBe(n)
      expect(server.output()).toMatch(/serve route: refused a client: another state dir/)
    } finally {
      other.cleanup()
    }
  })

  it('a killed server leaves a stale socket: commands still run (not routed), and the next server replaces it', async () => {
    const sock = join(st.dir, 'serve.sock')
    // A routed command in flight when the server dies: the client says so (exit 5), the guest command ends.
    const c = execa(process.execPath, [AGENT_BIN, 'vm', 'exec', '--vm', vms.runc, '--cmd', 'echo start; sleep 44.5'], {env: {...st.env, NO_COLOR: '1'}, reject: false, stdin: 'ignore'})
    let out = ''
    c.stdout?.on('data', (b: Buffer) => (out += b.toString()))
    expect(await waitUntil(() => out.includes('start'), 60_000)).toBe(true)
    server.proc.kill('SIGKILL')
    await server.proc
    const r = await c
    expect({code: r.exitCode, stderr: r.stderr}).toEqual({code: 5, stderr: 'Error: agent serve stopped before the command ended\nHint: run it again; without a server agent runs it itself'})
    const ps = async () => (await a(['vm', 'exec', '--vm', vms.runc, '--', 'sh', '-c', 'for p in /proc/[0-9]*; do tr "\\0" " " < $p/cmdline 2>/dev/null; echo; done'])).stdout.split('\n').filter((l) => l.startsWith('sleep 44.5')).length
    expect(await waitUntil(async () => (await ps()) === 0, 30_000)).toBe(true)
    expect(statSync(sock).isSocket()).toBe(true)
    const {routed, plain} = {routed: await a(['vm', 'exec', '--vm', vms.runc, '--cmd', 'echo hi; exit 7']), plain: await a(['vm', 'exec', '--vm', vms.runc, '--cmd', 'echo hi; exit 7'], {env: {AGENT_SERVE_ROUTE: 'off'}})}
    expect(routed).toMatchObject({code: 7, stdout: 'hi\n', stderr: ''})
    expect(stable(routed)).toEqual(stable(plain))
    server = await start()
    const n = served()
    expect(await a(['vm', 'exec', '--vm', vms.runc, '--cmd', 'echo again'])).toMatchObject({code: 0, stdout: 'again\n'})
    expect(served()).toBe(n + 1)
    expect(existsSync(sock)).toBe(true)
  })

  it('no socket at all: the normal path, silently', async () => {
    const other = tempState('agent-route-none-')
    try {
      mkdirSync(other.dir, {recursive: true})
      const r = await agentIn(other.env)(['vm', 'list'])
      expect(r).toMatchObject({code: 0, stdout: 'No running VMs (use --all to see every VM).\n', stderr: ''})
    } finally {
      other.cleanup()
    }
  })
})
