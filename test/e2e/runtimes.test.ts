import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {agent, agentIn, tempState} from '../helpers/agent.js'

// Each first-party runtime's hello and file-run convention, end to end in a real VM, from the
// offline images (Debian 13: Python 3.13, Node 20, Ruby 3.3, Go 1.24).
const programs = {
  python: {file: 'main.py', src: 'import sys\nprint("py", sys.argv[0])\n', out: 'py /in/main.py\n', hello: /^hello from python 3\.13\./},
  node: {file: 'main.mjs', src: 'console.log("node", import.meta.url)\n', out: 'node file:///in/main.mjs\n', hello: /^hello from node v20\./},
  ruby: {file: 'main.rb', src: 'puts "rb #{__FILE__}"\n', out: 'rb /in/main.rb\n', hello: /^hello from ruby 3\.3\./},
  golang: {
    file: 'main.go',
    src: 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("go", 6*7) }\n',
    out: 'go 42\n',
    hello: /^hello from golang go1\.24/,
  },
} as const

describe('agent runtimes', () => {
  it('lists each language\'s versions, the default and the ones that build offline', async () => {
    const st = tempState('agent-rt-list-')
    try {
      const j = await agent(['runtimes', '--json'], {env: st.env})
      expect(j.code, j.stderr).toBe(0)
      const doc = JSON.parse(j.stdout) as {runtimes: Array<{language: string; image: string; defaultVersion: string; versions: Array<{id: string; image: string; recipe: string | null; default: boolean; offline: boolean}>}>}
      const rt = Object.fromEntries(doc.runtimes.map((r) => [r.language, r]))
      const summary = (l: string) => rt[l].versions.map((v) => `${v.id}${v.default ? '*' : ''}${v.recipe ? '' : '^'}${v.offline ? '+' : ''}`).join(' ')
      expect(summary('python')).toBe('3.13*+ 3.12^ 3.11')
      expect(summary('node')).toBe('24*^ 22^ 20+ 18')
      expect(summary('ruby')).toBe('3.4*^ 3.3+')
      expect(summary('golang')).toBe('1.27*^ 1.24+')
      expect(rt.python).toMatchObject({defaultVersion: '3.13', image: 'docker.io/library/python:3.13-slim'})
      expect(rt.node.image).toBe('docker.io/library/node:24-slim')
      expect(rt.ruby.image).toBe('docker.io/library/ruby:3.4-slim')
      expect(rt.golang.image).toBe('docker.io/library/golang:1.27-trixie')
      expect(rt.python.versions.find((v) => v.id === '3.12')?.image).toBe('docker.io/library/python:3.12-slim')
      const t = await agent(['runtimes'], {env: st.env})
      expect(t.stdout).toMatch(/^LANGUAGE\s+ALIASES\s+VERSIONS\s+IMAGE\s/m)
      expect(t.stdout).toMatch(/^python\s+py,python3\s+3\.13\*,3\.12\^,3\.11\s+docker\.io\/library\/python:3\.13-slim\s/m)
      expect(t.stdout).toMatch(/^node\s+\S+\s+24\*\^,22\^,20,18\s/m)
    } finally {
      st.cleanup()
    }
  })
})

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
