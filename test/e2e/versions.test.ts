// Current runtimes from the offline (Debian 13) images, and choosing a version per VM, end to end.
// The images come from scripts/build-images.sh: the four languages on trixie, plus python@3.11
// and node@18 on bookworm.
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {agentIn, tempState} from '../helpers/agent.js'

const st = tempState('agent-versions-')
const a = agentIn({...st.env, AGENT_RUNTIME: 'gvisor'})
afterAll(async () => {
  await a(['vm', 'clean', '--all'])
  st.cleanup()
})

interface ListedVm {
  id: string
  language: string
  version: string | null
}

describe('the offline images are current (Debian 13)', () => {
  const ids: Record<string, string> = {}
  beforeAll(async () => {
    for (const l of ['python', 'node', 'ruby', 'golang']) {
      const r = await a(['vm', 'create', '--language', l])
      expect(r.code, r.stderr).toBe(0)
      ids[l] = r.stdout.trim()
    }
  })

  it('`vm exec --hello --all` reports Python 3.13, Node >= 20.19, Ruby 3.3 and Go 1.24', async () => {
    const r = await a(['vm', 'exec', '--hello', '--all'])
    expect(r.code, r.stderr).toBe(0)
    const hello = (l: string) => new RegExp(`=== ${ids[l]} \\(${l}\\): exit 0\\n(hello from [^\\n]*)`).exec(r.stdout)?.[1]
    expect(hello('python')).toMatch(/^hello from python 3\.13\.\d+$/)
    expect(hello('ruby')).toMatch(/^hello from ruby 3\.3\.\d+$/)
    expect(hello('golang')).toMatch(/^hello from golang go1\.24(\.\d+)?$/)
    const node = /^hello from node v(\d+)\.(\d+)\.\d+$/.exec(hello('node') ?? '')
    expect(node, r.stdout).not.toBeNull()
    const [major, minor] = [Number(node![1]), Number(node![2])]
    expect(major > 20 || (major === 20 && minor >= 19), `node v${major}.${minor}`).toBe(true)
  })

  it('records the version each VM got, in `vm list` and its JSON', async () => {
    const list = await a(['vm', 'list', '--json'])
    expect(list.code, list.stderr).toBe(0)
    const vms = JSON.parse(list.stdout) as ListedVm[]
    const got = Object.fromEntries(Object.values(ids).map((id) => [id, vms.find((v) => v.id === id)]))
    expect(got[ids.python]).toMatchObject({language: 'python', version: '3.13'})
    // node, ruby and golang default to a newer image-only version: offline, the version
    // `agent image build <language>` built is used, and recorded.
    expect(got[ids.node]).toMatchObject({language: 'node', version: '20'})
    expect(got[ids.ruby]).toMatchObject({language: 'ruby', version: '3.3'})
    expect(got[ids.golang]).toMatchObject({language: 'golang', version: '1.24'})
    const table = await a(['vm', 'list'])
    expect(table.stdout).toMatch(new RegExp(`^${ids.python}\\s+python@3\\.13\\s`, 'm'))
    expect(table.stdout).toMatch(new RegExp(`^${ids.node}\\s+node@20\\s`, 'm'))
  })
})

describe('a version per VM', () => {
  it('--language python@3.11 boots Python 3.11 (the bookworm recipe)', async () => {
    const c = await a(['vm', 'create', '--language', 'python@3.11'])
    expect(c.code, c.stderr).toBe(0)
    const id = c.stdout.trim()
    expect(id).toMatch(/^python-[0-9a-f]{8}$/)
    expect(c.stderr).toContain('localhost/agent/python:3.11')
    const hello = await a(['vm', 'exec', '--vm', id, '--hello'])
    expect(hello.code, hello.stderr).toBe(0)
    expect(hello.stdout).toMatch(/^hello from python 3\.11\.\d+\n$/)
    const vm = (JSON.parse((await a(['vm', 'list', '--json'])).stdout) as ListedVm[]).find((v) => v.id === id)
    expect(vm).toMatchObject({language: 'python', version: '3.11'})
  })

  it('--language node@18 and --language node --version 18 boot Node 18', async () => {
    for (const args of [['--language', 'node@18'], ['--language', 'javascript', '--version', '18']]) {
      const c = await a(['vm', 'create', ...args])
      expect(c.code, c.stderr).toBe(0)
      const id = c.stdout.trim()
      const hello = await a(['vm', 'exec', '--vm', id, '--hello'])
      expect(hello.code, hello.stderr).toBe(0)
      expect(hello.stdout).toMatch(/^hello from node v18\.\d+\.\d+\n$/)
      expect((await a(['vm', 'list'])).stdout).toMatch(new RegExp(`^${id}\\s+node@18\\s`, 'm'))
      expect((await a(['vm', 'clean', id])).code).toBe(0)
    }
  })

  it('an unknown version exits 2 listing the known ones, and creates nothing', async () => {
    const before = (await a(['vm', 'list', '--all', '--json'])).stdout
    const r = await a(['vm', 'create', '--language', 'python@2.7'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('unknown python version "2.7". Known versions: 3.13 (default), 3.12 (image only), 3.11')
    const node = await a(['vm', 'create', '--language', 'node', '--version', '16'])
    expect(node.code).toBe(2)
    expect(node.stderr).toContain('unknown node version "16". Known versions: 24 (default, image only), 22 (image only), 20, 18')
    const both = await a(['vm', 'create', '--language', 'python@3.11', '--version', '3.13'])
    expect(both.code).toBe(2)
    expect(both.stderr).toMatch(/ask for different versions/)
    const empty = await a(['vm', 'create', '--language', 'python@'])
    expect(empty.code).toBe(2)
    expect(empty.stderr).toMatch(/expected <language> or <language>@<version>/)
    expect((await a(['vm', 'list', '--all', '--json'])).stdout).toBe(before)
  })

  it('an image-only version that cannot be pulled says it has no offline recipe', async () => {
    // A dead proxy makes docker.io unreachable whatever this host's network allows.
    const dead = {HTTPS_PROXY: 'http://127.0.0.1:1', https_proxy: 'http://127.0.0.1:1', NO_PROXY: '', no_proxy: '', AGENT_PULL_TIMEOUT: '20'}
    const r = await a(['vm', 'create', '--language', 'python@3.12'], {env: dead, timeoutMs: 60_000})
    expect(r.code).toBe(7)
    expect(r.stderr).toContain('cannot pull docker.io/library/python:3.12-slim')
    expect(r.stderr).toMatch(/python@3\.12 has no offline recipe/)
  })
})
