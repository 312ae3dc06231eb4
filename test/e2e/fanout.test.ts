import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {execa} from 'execa'
import {AGENT_BIN, agentIn, tempState} from '../helpers/agent.js'
import {buildahContainers, runtimeContainers, vmDirs} from '../helpers/host.js'

// Guest processes without ps: the shell's own glob and cat work in every image and launcher.
const PS = 'for f in /proc/[0-9]*/comm; do cat "$f"; done 2>/dev/null; true'
const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/

// Many VMs at once: one VM per language, driven with --all and repeated --vm, non-TTY.
describe('fan-out over many VMs', () => {
  const st = tempState('agent-fanout-')
  const a = agentIn({...st.env, AGENT_RUNTIME: 'gvisor'})
  const ids: Record<string, string> = {}
  beforeAll(async () => {
    const made = await Promise.all(['python', 'node', 'ruby', 'golang'].map((l) => a(['vm', 'create', '--language', l, '--mem', '256'])))
    for (const r of made) {
      expect(r.code, r.stderr).toBe(0)
      const id = r.stdout.trim()
      ids[id.split('-')[0]] = id
    }
  })
  afterAll(async () => {
    await a(['vm', 'clean', '--all'])
    st.cleanup()
  })

  it('runs each VM\'s own hello with --all, plain progress on stderr, exit 0', async () => {
    const r = await a(['vm', 'exec', '--hello', '--all'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).not.toMatch(ANSI)
    expect(r.stderr).not.toMatch(ANSI)
    expect(r.stdout).toMatch(new RegExp(`=== ${ids.python} \\(python\\): exit 0\\nhello from python 3`))
    expect(r.stdout).toMatch(new RegExp(`=== ${ids.node} \\(node\\): exit 0\\nhello from node v`))
    expect(r.stdout).toMatch(new RegExp(`=== ${ids.ruby} \\(ruby\\): exit 0\\nhello from ruby 3`))
    expect(r.stdout).toMatch(new RegExp(`=== ${ids.golang} \\(golang\\): exit 0\\nhello from golang go1\\.`))
    // Progress names each VM as its task.
    for (const id of Object.values(ids)) expect(r.stderr).toContain(id)
  })

  it('gives one JSON object per VM with --json', async () => {
    const r = await a(['vm', 'exec', '--all', '--cmd', 'echo $((6*7))', '--json'])
    expect(r.code, r.stderr).toBe(0)
    const docs = JSON.parse(r.stdout)
    expect(docs).toHaveLength(4)
    for (const d of docs) expect(d).toMatchObject({exitCode: 0, stdout: '42\n', stderr: '', stdoutTruncated: false, error: null})
    expect(docs.every((d: {durationMs: number}) => d.durationMs > 0)).toBe(true)
  })

  it('exits non-zero naming the VM whose command failed, while the others succeed', async () => {
    const r = await a(['vm', 'exec', '--all', '--cmd', 'if command -v ruby >/dev/null; then echo boom >&2; exit 3; fi; echo fine'])
    expect(r.code).toBe(6)
    expect(r.stderr).toMatch(new RegExp(`1 of 4 VMs failed: ${ids.ruby}: exit 3`))
    expect(r.stdout.match(/^fine$/gm)).toHaveLength(3)
    expect(r.stdout).toMatch(new RegExp(`=== ${ids.ruby} \\(ruby\\): FAILED: exit 3\\n\\[stderr\\]\\nboom`))
  })

  it('fails a missing --vm with "not found" while the rest still run', async () => {
    const r = await a(['vm', 'exec', '--vm', ids.python, '--vm', 'ghost-00000000', '--vm', ids.node, '--cmd', 'echo ran', '--json'])
    expect(r.code).toBe(6)
    const docs = JSON.parse(r.stdout)
    expect(docs.map((d: {id: string}) => d.id)).toEqual([ids.python, 'ghost-00000000', ids.node])
    expect(docs[1].error).toMatch(/VM not found: "ghost-00000000"/)
    expect(docs[0].stdout).toBe('ran\n')
    expect(docs[2].stdout).toBe('ran\n')
    expect(r.stderr).toMatch(/1 of 3 VMs failed: ghost-00000000: VM not found/)
  })

  it('stops all in-flight work on Ctrl-C, exits 130, and leaves every VM usable', async () => {
    const proc = execa(process.execPath, [AGENT_BIN, 'vm', 'exec', '--all', '--cmd', 'sleep 600'], {env: {...st.env, AGENT_RUNTIME: 'gvisor'}, reject: false})
    await new Promise((r) => setTimeout(r, 4000))
    proc.kill('SIGINT')
    const t0 = Date.now()
    const r = await proc
    expect(r.exitCode).toBe(130)
    expect(Date.now() - t0).toBeLessThan(120_000) // the commands alone would take 600 s
    const list = JSON.parse((await a(['vm', 'list', '--all', '--json'])).stdout)
    expect(list.map((v: {status: string}) => v.status)).toEqual(['running', 'running', 'running', 'running'])
    const after = await a(['vm', 'exec', '--all', '--cmd', PS, '--json'])
    for (const d of JSON.parse(after.stdout)) expect(d.stdout).not.toMatch(/sleep/)
  })

  it('stop --all then clean --all leave nothing behind', async () => {
    const stop = await a(['vm', 'stop', '--all'])
    expect(stop.code, stop.stderr).toBe(0)
    expect(stop.stderr).not.toMatch(ANSI)
    const list = JSON.parse((await a(['vm', 'list', '--all', '--json'])).stdout)
    expect(list.map((v: {status: string}) => v.status)).toEqual(['stopped', 'stopped', 'stopped', 'stopped'])
    expect(await runtimeContainers(st.dir, 'gvisor')).toEqual([])
    const clean = await a(['vm', 'clean', '--all'])
    expect(clean.code, clean.stderr).toBe(0)
    expect(JSON.parse((await a(['vm', 'list', '--all', '--json'])).stdout)).toEqual([])
    expect(vmDirs(st.dir)).toEqual([])
    const left = await buildahContainers()
    for (const id of Object.values(ids)) expect(left.filter((c) => c.includes(id))).toEqual([])
  })
})
