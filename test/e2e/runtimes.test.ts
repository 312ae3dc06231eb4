import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {agentIn, tempState} from '../helpers/agent.js'

// Each first-party runtime's hello and file-run convention, end to end in a real VM.
const programs = {
  python: {file: 'main.py', src: 'import sys\nprint("py", sys.argv[0])\n', out: 'py /in/main.py\n', hello: /^hello from python 3\./},
  node: {file: 'main.mjs', src: 'console.log("node", import.meta.url)\n', out: 'node file:///in/main.mjs\n', hello: /^hello from node v\d+/},
  ruby: {file: 'main.rb', src: 'puts "rb #{__FILE__}"\n', out: 'rb /in/main.rb\n', hello: /^hello from ruby \d/},
  golang: {
    file: 'main.go',
    src: 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("go", 6*7) }\n',
    out: 'go 42\n',
    hello: /^hello from golang go1\./,
  },
} as const

describe.each(Object.entries(programs))('%s runtime in a VM', (language, p) => {
  const st = tempState(`agent-rt-${language}-`)
  const a = agentIn({...st.env, AGENT_RUNTIME: 'gvisor'})
  afterAll(async () => {
    await a(['vm', 'clean', '--all'])
    st.cleanup()
  })

  it('prints its hello and runs a file by its convention', async () => {
    const c = await a(['vm', 'create', '--language', language, '--mem', language === 'golang' ? '768' : '256'])
    expect(c.code, c.stderr).toBe(0)
    const id = c.stdout.trim()
    const hello = await a(['vm', 'exec', '--vm', id, '--hello'])
    expect(hello.code, hello.stderr).toBe(0)
    expect(hello.stdout).toMatch(p.hello)
    writeFileSync(join(st.dir, p.file), p.src)
    const run = await a(['vm', 'run', '--vm', id, '--file', join(st.dir, p.file), '--timeout', '120'])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toBe(p.out)
  })
})
