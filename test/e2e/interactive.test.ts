import {afterAll, describe, expect, it} from 'vitest'
import {spawn, type IPty} from 'node-pty'
import {AGENT_BIN, agentIn, tempState, vmForTests} from '../helpers/agent.js'

/**
 * `agent vm exec -it` and `agent vm shell` driven through a real PTY (node-pty), as a person at
 * a terminal would: the keys typed are bytes on agent's stdin, which is a terminal in raw mode.
 */
class Session {
  private out = ''
  private mark = 0
  readonly exited: Promise<{exitCode: number; signal?: number}>

  constructor(readonly pty: IPty) {
    pty.onData((d) => (this.out += d))
    this.exited = new Promise((resolve) => pty.onExit((e) => resolve(e)))
  }

  /** Waits until the output since the last match matches `re`; returns the match. */
  async expect(re: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    const until = Date.now() + timeoutMs
    for (;;) {
      const rest = this.out.slice(this.mark)
      const m = re.exec(rest)
      if (m) {
        this.mark += m.index! + m[0].length
        return m
      }
      if (Date.now() > until) throw new Error(`no ${re} within ${timeoutMs} ms; output so far: ${JSON.stringify(this.out)}`)
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  type(s: string): void {
    this.pty.write(s)
  }

  text(): string {
    return this.out
  }

  /** The exit code, or a failure (and the session killed) after `timeoutMs`. */
  async exit(timeoutMs = 30_000): Promise<number> {
    let t: NodeJS.Timeout | undefined
    const late = new Promise<never>((_, reject) => {
      t = setTimeout(() => {
        this.pty.kill('SIGKILL')
        reject(new Error(`agent did not exit within ${timeoutMs} ms; output: ${JSON.stringify(this.out)}`))
      }, timeoutMs)
    })
    try {
      return (await Promise.race([this.exited, late])).exitCode
    } finally {
      clearTimeout(t)
    }
  }
}

// A bash or sh prompt of root, at the end of what arrived so far (readline may ring the bell after ^C).
const PROMPT = /[#$] \x07?$/

describe.each(['gvisor', 'runc'] as const)('interactive terminal on %s', (launcher) => {
  let id = ''
  const {st} = vmForTests({prefix: `agent-tty-${launcher}-`, launcher, onCreate: (v) => (id = v)})
  const session = (args: string[], size = {cols: 90, rows: 30}) =>
    new Session(
      spawn(process.execPath, [AGENT_BIN, ...args], {
        name: 'xterm',
        cols: size.cols,
        rows: size.rows,
        cwd: st.dir,
        env: {...process.env, ...st.env, AGENT_LAUNCHER: launcher, NO_COLOR: '1', TERM: 'xterm'} as Record<string, string>,
      }),
    )

  it('vm exec -it runs bash on a terminal: prompt, 42, a resize seen by stty size, Ctrl-C, and exit 3 passed through', async () => {
    const s = session(['vm', 'exec', '-it', '--vm', id, '--', 'bash'])
    try {
      await s.expect(PROMPT)
      s.type('tty; stty size; echo $((6*7))\r')
      await s.expect(/\/dev\/pts\/\d+\r\n30 90\r\n42\r\n/)
      await s.expect(PROMPT)
      // Our terminal changes size: agent gets SIGWINCH and resizes the guest's PTY.
      s.pty.resize(120, 40)
      await new Promise((r) => setTimeout(r, 300))
      s.type('stty size\r')
      await s.expect(/[\r\n]40 120\r\n/)
      await s.expect(PROMPT)
      // Ctrl-C is a byte for the guest's terminal: it interrupts the guest's sleep, not agent.
      s.type('sleep 60; echo not-interrupted\r')
      await new Promise((r) => setTimeout(r, 1000))
      s.type('\x03')
      await s.expect(PROMPT, 10_000)
      s.type('echo still-$((1+1))\r')
      await s.expect(/still-2\r\n/)
      s.type('exit 3\r')
      expect(await s.exit()).toBe(3)
      // Only the echo of what was typed: the line was interrupted before its echo ran.
      expect(s.text()).not.toMatch(/\nnot-interrupted/)
    } finally {
      s.pty.kill('SIGKILL')
    }
  })

  it('vm shell opens the image shell, and --repl the language REPL, which Ctrl-D ends with 0', async () => {
    const sh = session(['vm', 'shell', id])
    try {
      await sh.expect(PROMPT)
      sh.type('echo $((6*7)); exit 3\r')
      await sh.expect(/[\r\n]42\r\n/)
      expect(await sh.exit()).toBe(3)
    } finally {
      sh.pty.kill('SIGKILL')
    }
    const repl = session(['vm', 'shell', id, '--repl'])
    try {
      // Python 3.13's REPL colours its prompt: match the prompt, not the line's end.
      await repl.expect(/>>> /)
      repl.type('6*7\r')
      await repl.expect(/\b42\r\n/)
      await repl.expect(/>>> /)
      repl.type('\x04') // Ctrl-D: end of input on the guest's terminal
      expect(await repl.exit()).toBe(0)
    } finally {
      repl.pty.kill('SIGKILL')
    }
  })
})

describe('a terminal is needed', () => {
  // No VM: the refusal comes before any VM is looked at.
  const st = tempState('agent-tty-none-')
  const a = agentIn(st.env)
  afterAll(() => st.cleanup())

  it('-t with stdin that is not a terminal is a usage error (exit 2), as docker does', async () => {
    for (const args of [
      ['vm', 'exec', '-it', '--vm', 'python-00000000', '--', 'bash'],
      ['vm', 'exec', '-t', '--vm', 'python-00000000', '--', 'bash'],
      ['vm', 'shell', 'python-00000000'],
    ]) {
      const r = await a(args, {input: 'echo hi\n'})
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).toMatch(/needs a terminal, but stdin is not one/)
    }
  })
})
