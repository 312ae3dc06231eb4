import {existsSync, mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, describe, expect, it} from 'vitest'
import {imageStore} from './storage.js'

describe('imageStore', () => {
  const dirs: string[] = []
  const tmp = (name = 'agentimg-storage-') => {
    const d = mkdtempSync(join(tmpdir(), name))
    dirs.push(d)
    return d
  }
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, {recursive: true, force: true})))

  it("uses the host's normal storage when neither AGENT_STATE_DIR nor AGENT_IMAGE_STORE is set", () => {
    expect(imageStore('/nonexistent', {})).toEqual({env: {}})
  })

  it('isolates storage under <state>/containers with AGENT_STATE_DIR', () => {
    const state = tmp()
    const s = imageStore(state, {AGENT_STATE_DIR: state})
    const dir = join(state, 'containers')
    expect(s.dir).toBe(dir)
    expect(s.env.CONTAINERS_STORAGE_CONF).toBe(join(dir, 'storage.conf'))
    expect(s.policy).toBe(join(dir, 'policy.json'))
    expect(s.hostDir).toBe(join(dir, 'host-var-lib-containers'))
    const conf = readFileSync(s.env.CONTAINERS_STORAGE_CONF, 'utf8')
    expect(conf).toContain(`graphroot = "${join(dir, 'storage')}"`)
    expect(conf).toContain(`runroot = "${join(dir, 'runroot')}"`)
    expect(conf).not.toContain('/var/lib/containers')
    expect(JSON.parse(readFileSync(s.policy!, 'utf8'))).toEqual({default: [{type: 'insecureAcceptAnything'}]})
    expect(existsSync(s.hostDir!)).toBe(true)
  })

  it('AGENT_IMAGE_STORE wins, so several state dirs share one store', () => {
    const state = tmp()
    const shared = tmp()
    const a = imageStore(state, {AGENT_STATE_DIR: state, AGENT_IMAGE_STORE: shared})
    const b = imageStore(tmp(), {AGENT_STATE_DIR: 'x', AGENT_IMAGE_STORE: shared})
    expect(a.dir).toBe(shared)
    expect(b.env).toEqual(a.env)
    expect(existsSync(join(state, 'containers'))).toBe(false)
  })

  it('quotes paths in storage.conf', () => {
    const state = tmp('agentimg-"q\\-')
    const s = imageStore(state, {AGENT_STATE_DIR: state})
    const conf = readFileSync(s.env.CONTAINERS_STORAGE_CONF, 'utf8')
    expect(conf).toContain(`graphroot = ${JSON.stringify(join(state, 'containers', 'storage'))}`)
  })
})
