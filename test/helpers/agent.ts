import {execa} from 'execa'
import {afterAll, beforeAll, expect} from 'vitest'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const AGENT_BIN = join(ROOT, 'packages/cli/bin/run.js')
/** Images built once for the whole suite (by .ci/run or scripts/build-images.sh) and shared by every test state dir. */
export const TEST_IMAGE_STORE = process.env.AGENT_TEST_IMAGE_STORE ?? '/var/tmp/agent-test-images'

export interface AgentResult {
  code: number
  stdout: string
  stderr: string
  durationMs: number
}

export interface RunOptions {
  env?: Record<string, string | undefined>
  input?: string
  timeoutMs?: number
  cwd?: string
}

/** Runs the real `agent` CLI as a separate process. */
export async function agent(args: string[], opts: RunOptions = {}): Promise<AgentResult> {
  const t0 = performance.now()
  const res = await execa(process.execPath, [AGENT_BIN, ...args], {
    env: {NO_COLOR: '1', ...opts.env},
    extendEnv: true,
    reject: false,
    stripFinalNewline: false,
    input: opts.input,
    stdin: opts.input === undefined ? 'ignore' : undefined,
    timeout: opts.timeoutMs ?? 170_000,
    cwd: opts.cwd,
  })
  return {code: res.exitCode ?? -1, stdout: String(res.stdout), stderr: String(res.stderr), durationMs: performance.now() - t0}
}

/** A fresh state dir for one test file, using the shared image store. */
export function tempState(prefix = 'agent-test-'): {dir: string; env: Record<string, string>; cleanup: () => void} {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  return {
    dir,
    env: {AGENT_STATE_DIR: dir, AGENT_IMAGE_STORE: TEST_IMAGE_STORE},
    cleanup: () => rmSync(dir, {recursive: true, force: true}),
  }
}

/** Binds a state env to `agent`, for brevity in tests. */
export function agentIn(env: Record<string, string>) {
  return (args: string[], opts: RunOptions = {}) => agent(args, {...opts, env: {...env, ...opts.env}})
}

/**
 * One state dir and one python VM for a test file (or a describe block): the VM is created in
 * beforeAll (its id handed to `onCreate`), and every VM of the state dir is cleaned in afterAll.
 */
export function vmForTests(o: {prefix: string; launcher: string; create?: string[]; onCreate: (id: string) => void}) {
  const st = tempState(o.prefix)
  const a = agentIn({...st.env, AGENT_LAUNCHER: o.launcher})
  beforeAll(async () => {
    const r = await a(['vm', 'create', '--language', 'python', '--mem', '128', ...(o.create ?? [])])
    expect(r.code, r.stderr).toBe(0)
    o.onCreate(r.stdout.trim())
  })
  afterAll(async () => {
    await a(['vm', 'clean', '--all'])
    st.cleanup()
  })
  return {st, a}
}
