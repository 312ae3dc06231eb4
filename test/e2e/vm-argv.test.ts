import {describe, expect, it} from 'vitest'
import {vmForTests} from '../helpers/agent.js'

// `vm exec/run --vm ID -- argv...`: the argv runs as is, with no shell in between.
describe.each(['gvisor', 'runc'] as const)('argv form on %s', (launcher) => {
  let id = ''
  const {st, a} = vmForTests({prefix: `agent-argv-${launcher}-`, launcher, onCreate: (v) => (id = v)})

  it('runs an argv without a shell: no expansion, quoting kept, exit code passed through', async () => {
    const py = await a(['vm', 'exec', '--vm', id, '--', 'python3', '-c', 'print(6*7)'])
    expect(py.code, py.stderr).toBe(0)
    expect(py.stdout).toBe('42\n')
    // A shell would expand $HOME and the glob, and split 'a  b'.
    const echo = await a(['vm', 'exec', '--vm', id, '--', 'echo', '$HOME', '*', 'a  b', id])
    expect(echo.stdout).toBe(`$HOME * a  b ${id}\n`)
    const code = await a(['vm', 'exec', '--vm', id, '--', 'python3', '-c', 'import sys; sys.exit(5)'])
    expect(code.code).toBe(5)
    // --cmd stays the shell form.
    const sh = await a(['vm', 'exec', '--vm', id, '--cmd', 'echo $((6*7))'])
    expect(sh.stdout).toBe('42\n')
  })

  it('passes stdin to the argv, and runs it under vm run after the files are copied', async () => {
    const cat = await a(['vm', 'exec', '--vm', id, '--', 'tr', 'a-z', 'A-Z'], {input: 'piped\n'})
    expect(cat.stdout).toBe('PIPED\n')
    const {writeFileSync} = await import('node:fs')
    const {join} = await import('node:path')
    const data = join(st.dir, 'data.txt')
    writeFileSync(data, 'one\ntwo\n')
    const run = await a(['vm', 'run', '--vm', id, '--file', data, '--', 'wc', '-l', '/in/data.txt'])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toBe('2 /in/data.txt\n')
  })

  it('refuses an argv with --cmd or --hello, and arguments without --', async () => {
    const both = await a(['vm', 'exec', '--vm', id, '--cmd', 'true', '--', 'true'])
    expect(both.code).toBe(2)
    expect(both.stderr).toMatch(/not --cmd and a command after --/)
    const hello = await a(['vm', 'exec', '--vm', id, '--hello', '--', 'true'])
    expect(hello.code).toBe(2)
    const bare = await a(['vm', 'exec', '--vm', id, '--cmd', 'true', 'python3'])
    expect(bare.code).toBe(2)
    expect(bare.stderr).toMatch(/unexpected argument "python3"/)
  })
})
