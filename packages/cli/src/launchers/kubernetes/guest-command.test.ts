// The wrapper runs in the pod's image; here it runs under this host's real /bin/sh and coreutils
// `timeout` (the fallback path: no /.agent/agent-init on the host), which is what it meets in a
// Debian-based image.
import {spawn, spawnSync} from 'node:child_process'
import {existsSync, mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {AgentError} from '../../errors.js'
import {framedStdinArgv, guestArgv, killArgv, PID_DIR, stdinFrame} from './guest-command.js'

const dir = mkdtempSync(join(tmpdir(), 'k8s-guest-cmd-'))
const tags: string[] = []
let n = 0
const tag = () => {
  const t = `${(0xabc00000 + n++).toString(16)}0000`
  tags.push(t)
  return t
}
afterAll(() => {
  rmSync(dir, {recursive: true, force: true})
  for (const t of tags) rmSync(join(PID_DIR, t), {force: true})
})

const hasTimeout = spawnSync('/bin/sh', ['-c', 'command -v timeout']).status === 0
const run = (argv: string[], input?: string) => {
  const r = spawnSync(argv[0]!, argv.slice(1), {input, encoding: 'utf8'})
  return {code: r.status, stdout: r.stdout, stderr: r.stderr}
}
const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('guestArgv', () => {
  it('passes env values as they are (quotes, $, newlines), the workdir and the exit code', () => {
    const tricky = `a'b"c $HOME \`x\`\nline2`
    const r = run(guestArgv({argv: ['/bin/sh', '-c', 'printf "%s|%s" "$V" "$(pwd)"; exit 7'], env: {V: tricky}, workdir: dir, timeoutSec: 0, tag: tag()}))
    expect(r.code).toBe(7)
    expect(r.stdout).toBe(`${tricky}|${dir}`)
  })

  it('runs argv without a shell of ours in between: arguments arrive whole', () => {
    const r = run(guestArgv({argv: ['printf', '[%s]', 'a b', '$x', ''], env: {}, timeoutSec: 5, tag: tag()}))
    expect(r.code).toBe(0)
    expect(r.stdout).toBe('[a b][$x][]')
  })

  it('stdin reaches the command', () => {
    expect(run(guestArgv({argv: ['cat'], env: {}, timeoutSec: 5, tag: tag()}), 'in\n').stdout).toBe('in\n')
  })

  it('a missing workdir is exit 126; a missing command is 127', () => {
    expect(run(guestArgv({argv: ['true'], env: {}, workdir: join(dir, 'absent'), timeoutSec: 0, tag: tag()})).code).toBe(126)
    expect(run(guestArgv({argv: ['no-such-command-here'], env: {}, timeoutSec: 0, tag: tag()})).code).toBe(127)
  })

  it('the deadline kills the whole tree: exit 124 and the background child is gone', () => {
    const pidFile = join(dir, 'bg.pid')
    const r = run(guestArgv({argv: ['/bin/sh', '-c', `sleep 300 & echo $! > ${pidFile}; sleep 300`], env: {}, timeoutSec: 1, tag: tag()}))
    if (!hasTimeout) {
      // A host without coreutils (macOS): the documented refusal, never a command without its deadline.
      expect(r.code).toBe(125)
      expect(r.stderr).toMatch(/no timeout program/)
      expect(existsSync(pidFile)).toBe(false)
      return
    }
    expect(r.code).toBe(124)
    const bg = Number(readFileSync(pidFile, 'utf8'))
    expect(bg).toBeGreaterThan(1)
    // The orphan is reaped by init; until then it may be a zombie, which signal 0 still sees: wait for that.
    for (let i = 0; i < 100 && alive(bg) && !/^Z/m.test(stateOf(bg)); i++) spawnSync('sleep', ['0.05'])
    expect(!alive(bg) || /^Z/m.test(stateOf(bg))).toBe(true)
  })

  it('refuses environment names the shell could not export', () => {
    expect(() => guestArgv({argv: ['true'], env: {'A-B': '1'}, timeoutSec: 0, tag: 'abcdef0123'})).toThrow(AgentError)
    expect(() => guestArgv({argv: ['true'], env: {A: 'x\0y'}, timeoutSec: 0, tag: 'abcdef0123'})).toThrow(/NUL/)
  })
})

function stateOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1] ?? ''
  } catch {
    return ''
  }
}

describe('killArgv', () => {
  it('kills a running command\'s tree by its tag (what Ctrl-C does, since closing an exec does not)', async () => {
    const t = tag()
    const pidFile = join(dir, 'bg2.pid')
    const child = spawn('/bin/sh', guestArgv({argv: ['/bin/sh', '-c', `sleep 300 & echo $! > ${pidFile}; sleep 300`], env: {}, timeoutSec: 600, tag: t}).slice(1), {stdio: 'ignore'})
    const ended = new Promise<string>((resolve) => child.on('exit', (code, sig) => resolve(sig ?? `exit ${code}`)))
    for (let i = 0; i < 200 && !(existsSync(pidFile) && existsSync(join(PID_DIR, t))); i++) await new Promise((r) => setTimeout(r, 25))
    expect(existsSync(join(PID_DIR, t))).toBe(true)
    const bg = Number(readFileSync(pidFile, 'utf8'))
    expect(run(killArgv(t)).code).toBe(0)
    expect(await ended).toBe('SIGKILL')
    for (let i = 0; i < 100 && alive(bg) && !/^Z/m.test(stateOf(bg)); i++) await new Promise((r) => setTimeout(r, 50))
    expect(!alive(bg) || /^Z/m.test(stateOf(bg))).toBe(true)
    expect(existsSync(join(PID_DIR, t))).toBe(false)
  })

  it('is harmless for a tag that ran nothing', () => {
    expect(run(killArgv(tag())).code).toBe(0)
  })
})

describe('framedStdinArgv (the v4 protocol\'s stdin end)', () => {
  const framed = (...chunks: string[]) => Buffer.concat([...chunks.map((c) => stdinFrame(Buffer.from(c))), stdinFrame(Buffer.alloc(0))])

  it('gives the command exactly the bytes framed, newlines and digits included, then its end', () => {
    const argv = framedStdinArgv(guestArgv({argv: ['/bin/sh', '-c', 'wc -c; exit 9'], env: {}, timeoutSec: 10, tag: tag()}))
    const r = spawnSync(argv[0]!, argv.slice(1), {input: framed('abc', '12\n34\n', '0\n'), encoding: 'utf8'})
    expect(r.status).toBe(9)
    expect(r.stdout.trim()).toBe('11')
    const cat = spawnSync(argv[0]!, framedStdinArgv(['cat']).slice(1), {input: framed('5\nhello', 'x'.repeat(70_000)), encoding: 'utf8'})
    expect(cat.status).toBe(0)
    expect(cat.stdout).toBe(`5\nhello${'x'.repeat(70_000)}`)
  })

  it('a command that does not read stdin ends the exec, though stdin never ends', async () => {
    const argv = framedStdinArgv(['/bin/sh', '-c', 'echo done; exit 4'])
    const child = spawn(argv[0]!, argv.slice(1), {stdio: ['pipe', 'pipe', 'ignore']})
    child.stdin.write(stdinFrame(Buffer.from('never read')))
    let out = ''
    child.stdout.on('data', (b) => (out += b))
    // 'close', not 'exit': the output is read to its end first.
    const code = await new Promise((resolve) => child.on('close', (c) => resolve(c)))
    child.stdin.destroy()
    expect(code).toBe(4)
    expect(out).toBe('done\n')
  })
})
