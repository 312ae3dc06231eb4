import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {ROOT, agentIn, tempState} from '../helpers/agent.js'

// The real `agent` through a whole krunvm lifecycle, against the stand-in that enforces
// krunvm 0.2.6's CLI (test/fixtures/krunvm-standin; 0.2.7 takes the same argv). No KVM here: this
// is a contract test.
const st = tempState('agent-krunvm-')
const log = join(st.dir, 'krunvm-calls.jsonl')
const env = {
  ...st.env,
  PATH: `${join(ROOT, 'test/fixtures/krunvm-standin')}:${process.env.PATH}`,
  AGENT_KRUNVM_ASSUME_HYPERVISOR: '1',
  KRUNVM_STANDIN_LOG: log,
}
const a = agentIn(env)
afterAll(() => st.cleanup())

const calls = (): string[][] => {
  try {
    // `--version` calls are availability probes; the contract is about what agent asks krunvm to do.
    return readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l).argv).filter((argv: string[]) => argv[0] !== '--version')
  } catch {
    return []
  }
}

describe('krunvm launcher (stand-in contract)', () => {
  it('refuses --network none with an explanation, before calling krunvm', async () => {
    // --runtime is the old spelling of --launcher, and still works.
    const r = await a(['vm', 'create', '--language', 'python', '--runtime', 'krunvm'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/krunvm cannot run a VM without network/)
    expect(r.stderr).toMatch(/--network allow_all.*--launcher gvisor/)
    expect(calls()).toEqual([])
    expect(JSON.parse((await a(['vm', 'list', '--all', '--json'])).stdout)).toEqual([])
  })

  it('runs create, exec, run --file, stop, start and clean with krunvm\'s exact argv', async () => {
    const c = await a(['vm', 'create', '--language', 'python', '--launcher', 'krunvm', '--network', 'allow_all', '--cpu', '2', '--mem', '512'])
    expect(c.code, c.stderr).toBe(0)
    const id = c.stdout.trim()
    const name = `agent-${id}`
    const vmDir = join(st.dir, 'vms', id)
    // The image is the one the VM record names (its tag follows the language version).
    const image = (JSON.parse((await a(['vm', 'list', '--all', '--json'])).stdout) as Array<{id: string; image: string}>).find((v) => v.id === id)?.image
    expect(image).toMatch(/^localhost\/agent\/python:/)
    expect(calls()[0]).toEqual([
      'create', image, '--name', name, '--cpus', '2', '--mem', '512',
      '--volume', `${vmDir}/in:/in`, '--volume', `${vmDir}/out:/out`,
    ])
    const hello = await a(['vm', 'exec', '--vm', id, '--hello'])
    expect(hello.code, hello.stderr).toBe(0)
    expect(hello.stdout).toMatch(/^hello from python/)
    const seven = await a(['vm', 'exec', '--vm', id, '--cmd', 'exit 7'])
    expect(seven.code).toBe(7)
    writeFileSync(join(st.dir, 'main.py'), 'print("from a file")\n')
    const run = await a(['vm', 'run', '--vm', id, '--file', join(st.dir, 'main.py')])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toBe('from a file\n')
    const starts = calls().filter((x) => x[0] === 'start')
    expect(starts).toHaveLength(3)
    for (const s of starts) {
      // Code travels as a file in /in, never inline on the kernel command line.
      expect(s.slice(-4, -1)).toEqual([name, '/bin/sh', '--'])
      expect(s.at(-1)).toMatch(/^\/in\/\.agent\/cmd-[\w-]+\.sh$/)
    }
    expect((await a(['vm', 'stop', id])).code).toBe(0)
    expect((await a(['vm', 'start', id])).code).toBe(0)
    const cl = await a(['vm', 'clean', id])
    expect(cl.code, cl.stderr).toBe(0)
    expect(calls().at(-1)).toEqual(['delete', name])
    expect(JSON.parse((await a(['vm', 'list', '--all', '--json'])).stdout)).toEqual([])
  })

  it('maps krunvm\'s own failure (255, message on stdout) to a clear agent error and leaves nothing', async () => {
    const r = await a(['vm', 'create', '--language', 'python', '--launcher', 'krunvm', '--network', 'allow_all'], {env: {KRUNVM_STANDIN_FAIL: 'create'}})
    expect(r.code).not.toBe(0)
    expect(r.code).not.toBe(255)
    expect(r.stderr).toMatch(/vm create failed at step "creating the krunvm VM": .*krunvm/)
    expect(JSON.parse((await a(['vm', 'list', '--all', '--json'])).stdout)).toEqual([])
  })

  it('with guest volumes off, refuses --file clearly', async () => {
    const c = await a(['vm', 'create', '--language', 'python', '--launcher', 'krunvm', '--network', 'allow_all'], {env: {AGENT_ENABLE_GUEST_VOLUMES: '0'}})
    expect(c.code, c.stderr).toBe(0)
    const id = c.stdout.trim()
    expect(calls().at(-1)).not.toContain('--volume')
    writeFileSync(join(st.dir, 'x.py'), 'print(1)\n')
    const r = await a(['vm', 'run', '--vm', id, '--file', join(st.dir, 'x.py')])
    expect(r.code).toBe(5)
    expect(r.stderr).toMatch(/no guest volumes/)
    const inline = await a(['vm', 'exec', '--vm', id, '--cmd', 'echo inline'])
    expect(inline.stdout).toBe('inline\n')
    expect((await a(['vm', 'clean', id])).code).toBe(0)
  })

  it('krunvm 0.2.7: the same argv, and doctor names the version and what it allows', async () => {
    const v7 = {KRUNVM_STANDIN_VERSION: '0.2.7'}
    const d = await a(['doctor', '--json'], {env: v7})
    expect(d.code, d.stderr).toBe(0)
    const checks = JSON.parse(d.stdout).checks as Array<{id: string; ok: boolean; detail: string}>
    expect(checks.find((c) => c.id === 'krunvm-version')).toMatchObject({ok: true, detail: expect.stringMatching(/^krunvm 0\.2\.7: network always on \(no off switch/)})
    const before = calls().length
    const c = await a(['vm', 'create', '--language', 'python', '--launcher', 'krunvm', '--network', 'allow_all'], {env: v7})
    expect(c.code, c.stderr).toBe(0)
    const id = c.stdout.trim()
    expect(calls()[before]).toEqual(expect.arrayContaining(['create', '--name', `agent-${id}`, '--volume', `${join(st.dir, 'vms', id)}/in:/in`]))
    const hello = await a(['vm', 'exec', '--vm', id, '--hello'], {env: v7})
    expect(hello.code, hello.stderr).toBe(0)
    expect(hello.stdout).toMatch(/^hello from python/)
    expect((await a(['vm', 'clean', id], {env: v7})).code).toBe(0)
  })
})
