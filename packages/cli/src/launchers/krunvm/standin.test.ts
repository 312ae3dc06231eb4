import {spawn} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {afterAll, beforeAll, beforeEach, describe, expect, it} from 'vitest'
import {parseKrunvmToml} from './state-file.js'

// The stand-in (test/fixtures/krunvm-standin) is what every krunvm test drives: it must reject
// what krunvm 0.2.6 rejects, the way krunvm does.
const STANDIN = resolve(dirname(fileURLToPath(import.meta.url)), '../../../../../test/fixtures/krunvm-standin/krunvm')

let root: string
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'agent-krunvm-standin-test-'))
})
afterAll(() => {
  rmSync(root, {recursive: true, force: true})
})

/** Runs the stand-in with stdin closed; output exactly as printed, exit code as a number. */
function runStandin(args: string[], env: NodeJS.ProcessEnv): Promise<{exitCode: number; stdout: string; stderr: string}> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(STANDIN, args, {env, stdio: ['ignore', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code, signal) => resolveRun({exitCode: code ?? 128 + (signal ? 15 : 0), stdout, stderr}))
  })
}

/** Polls until `check` holds (or 30 s pass): never a fixed sleep that a loaded host can outlast. */
async function waitFor(check: () => boolean, ms = 30_000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) if (check()) return true
  return check()
}

describe('the krunvm stand-in itself', () => {
  let xdg: string
  let host: string
  // Like krunvm, the stand-in refuses non-root users outside `buildah unshare`; unit tests run as anyone.
  const asUser: Record<string, string> = process.getuid?.() !== 0 ? {BUILDAH_ISOLATION: 'chroot'} : {}
  const run = (args: string[], env: Record<string, string> = {}) => runStandin(args, {...process.env, ...asUser, XDG_CONFIG_HOME: xdg, ...env})
  beforeEach(() => {
    xdg = mkdtempSync(join(root, 'xdg-'))
    host = mkdtempSync(join(root, 'host-'))
  })

  it('rejects what krunvm 0.2.6 rejects (clap errors: stderr, exit 2)', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['create', 'img', '-p', '8080:80'], /unexpected argument '-p' found/],
      [['create', 'img', '--volume', `${host}:/a/b`], /only single direct root children are supported as guest_path/],
      [['create', 'img', '--volume', '/x:/a/b'], /host_path does not exists/],
      [['create', 'img', '--volume', `${host}/missing:/in`], /host_path does not exists/],
      [['create', 'img', '--volume', `relative:/in`], /host_path is not an absolute path/],
      [['create', 'img', '--volume', `${host}:in`], /guest_path is not an absolute path/],
      [['create', 'img', '--volume', `${host}:/in:ro`], /Too many ':' separators/],
      [['create', 'img', '--port', '8080'], /invalid value '8080' for '--port <PORTS>'/],
      [['create', 'img', '--port', '70000:80'], /Invalid host port/],
      [['create', 'img', '--cpus', '1.5'], /invalid value '1.5' for '--cpus <CPUS>'/],
      [['create', 'img', '--bogus'], /unexpected argument '--bogus' found/],
      [['create', 'img', '--name', 'a', '--name', 'b'], /cannot be used multiple times/],
      [['create'], /required arguments were not provided/],
      [['start', 'vm', '/bin/sh', '-c', 'echo hi'], /unexpected argument '-c' found/],
      [['start', 'vm', 'echo', '--version'], /unexpected argument '--version' found/],
      [['frobnicate'], /unrecognized subcommand/],
    ]
    const results = await Promise.all(cases.map(([args]) => run(args)))
    cases.forEach(([args, msg], i) => {
      const r = results[i]
      expect({args, code: r.exitCode}).toEqual({args, code: 2})
      expect(r.stderr).toMatch(msg)
      expect(r.stdout).toBe('')
    })
  })

  it('keeps state in $XDG_CONFIG_HOME/krunvm/krunvm.toml and reports its own errors on stdout with 255', async () => {
    mkdirSync(join(host, 'in'))
    expect((await run(['create', 'img:1', '--name', 'vm1', '--volume', `${host}/in:/in`, '--port', '8080:80'])).stdout).toBe('microVM created with name: vm1\n')
    const toml = readFileSync(join(xdg, 'krunvm', 'krunvm.toml'), 'utf8')
    expect(toml).toMatch(/\[vmconfig_map\.vm1\]\nname = "vm1"\ncpus = 2\nmem = 1024\n/)
    expect(parseKrunvmToml(toml).get('vm1')!.mappedVolumes).toEqual({[`${host}/in`]: '/in'})

    const dup = await run(['create', 'img', '--name', 'vm1'])
    expect([dup.exitCode, dup.stdout]).toEqual([255, 'A VM with this name already exists\n'])
    const unknown = await run(['start', 'nope', '/bin/true'])
    expect([unknown.exitCode, unknown.stdout]).toEqual([255, 'No VM found with name nope\n'])
    expect((await run(['list'])).stdout).toMatch(/^\nvm1\n CPUs: 2\n/)

    const ok = await run(['start', '--env', 'A=1', 'vm1', '/bin/sh', '--', '-c', 'echo $A $HOSTNAME; exit 3'])
    expect([ok.exitCode, ok.stdout]).toEqual([3, '1 vm1\n'])

    // The first start holds the lock until the test lets it go: no race with a loaded host.
    const started = join(host, 'bg.started')
    const go = join(host, 'bg.go')
    const bg = run(['start', 'vm1', '/bin/sh', '--', '-c', `touch ${started}; while [ ! -e ${go} ]; do sleep 0.05; done`])
    expect(await waitFor(() => existsSync(started)), 'the first start never ran its command').toBe(true)
    const locked = await run(['start', 'vm1', '/bin/true'])
    expect([locked.exitCode, locked.stdout]).toEqual([255, "Couldn't acquire lock file. Is another instance of this VM already running?\n"])
    writeFileSync(go, '')
    expect((await bg).exitCode).toBe(0)

    const tooLong = await run(['start', 'vm1', '/bin/sh', '--', '-c', `echo ${'x'.repeat(3000)}`])
    expect([tooLong.exitCode, tooLong.stdout]).toEqual([255, 'Error starting VM\n'])

    const cv = await run(['changevm', 'vm1', '--cpus', '9', '--mem', '20000'])
    expect(cv.stdout).toMatch(/maximum number of CPUs supported is 8[\s\S]*maximum amount of RAM supported is 16384 MiB/)
    expect((await run(['delete', 'vm1'])).exitCode).toBe(0)
    const gone = await run(['delete', 'vm1'])
    expect([gone.exitCode, gone.stdout]).toEqual([255, 'No VM found with that name\n'])
    expect((await run(['list'])).stdout).toBe('No microVMs found\n')
    expect((await run(['list'], {XDG_CONFIG_HOME: ''})).exitCode).toBe(255) // refuses the user's ~/.config
  })
})
