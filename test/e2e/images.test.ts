// `agent image …` end to end: real agent processes, real buildah, the shared TEST image store
// (filled by scripts/build-images.sh; building here is quick when it already holds the images).
import {execa} from 'execa'
import {chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {defineRuntime} from '@agent/runtime-kit'
import {afterAll, describe, expect, it} from 'vitest'
import {runtime as golangDecl} from '../../plugins/golang/src/runtime.js'
import {runtime as nodeDecl} from '../../plugins/node/src/runtime.js'
import {runtime as pythonDecl} from '../../plugins/python/src/runtime.js'
import {runtime as rubyDecl} from '../../plugins/ruby/src/runtime.js'
import {Buildah} from '../../packages/cli/src/images/buildah.js'
import {imageStore} from '../../packages/cli/src/images/storage.js'
import {TEST_IMAGE_STORE, agent, agentIn, tempState} from '../helpers/agent.js'

const [golang, node, python, ruby] = [golangDecl, nodeDecl, pythonDecl, rubyDecl].map(defineRuntime)
const BASE = 'localhost/agent/debian:trixie'
const BOOKWORM = 'localhost/agent/debian:bookworm'
/** What each offline image (Debian 13) reports as its version. */
const OFFLINE_VERSION: Record<string, [string, RegExp]> = {
  python: ['3.13', /^Python 3\.13\./],
  node: ['20', /^v20\.(19|[2-9]\d)\./],
  ruby: ['3.3', /^ruby 3\.3\./],
  golang: ['1.24', /^go version go1\.24[. ]/],
}
const st = tempState('agent-images-')
const a = agentIn(st.env)
afterAll(() => st.cleanup())

/** buildah itself, on the shared test store (for checks the CLI does not offer). */
function buildah(args: string[]) {
  return execa('buildah', args, {
    env: {CONTAINERS_STORAGE_CONF: join(TEST_IMAGE_STORE, 'storage.conf'), BUILDAH_RUNTIME: process.env.BUILDAH_RUNTIME ?? 'runc'},
    reject: false,
    stdin: 'ignore',
  })
}
const imageId = async (ref: string) => (await buildah(['inspect', '--type', 'image', '--format', '{{.FromImageID}}', ref])).stdout.trim()

/** path -> mtime:size of everything under dir; undefined when dir does not exist. */
function snapshot(dir: string): Record<string, string> | undefined {
  if (!existsSync(dir)) return undefined
  const out: Record<string, string> = {[dir]: String(statSync(dir).mtimeMs)}
  const walk = (d: string) => {
    for (const e of readdirSync(d, {withFileTypes: true})) {
      const p = join(d, e.name)
      const s = statSync(p, {throwIfNoEntry: false})
      out[p] = s ? `${s.mtimeMs}:${s.size}` : 'gone'
      if (e.isDirectory()) walk(p)
    }
  }
  walk(dir)
  return out
}

describe('agent image build', () => {
  it.each([python, node, ruby, golang].map((rt) => [rt.language, rt] as const))(
    '%s: builds localhost/agent/<language>:<version> (and :latest) on trixie, and its version command reports the Debian 13 version',
    async (language, rt) => {
      const r = await a(['image', 'build', language, '--json'], {timeoutMs: 900_000})
      expect(r.code, r.stderr).toBe(0)
      const res = JSON.parse(r.stdout)
      const [version, reports] = OFFLINE_VERSION[language]
      expect(rt.offlineVersion).toBe(version)
      expect(res).toMatchObject({
        language,
        version,
        image: `localhost/agent/${language}:${version}`,
        tags: [`localhost/agent/${language}:${version}`, `localhost/agent/${language}:latest`],
        base: BASE,
      })
      expect(await imageId(`localhost/agent/${language}:latest`)).toBe(await imageId(res.image))
      expect(typeof res.built).toBe('boolean')
      expect(typeof res.durationMs).toBe('number')
      // Progress went to stderr, as plain text (not a TTY here): the two steps, no ANSI.
      expect(r.stderr).toMatch(/base image/)
      expect(r.stderr).toMatch(/language image/)
      expect(r.stderr).not.toMatch(/\x1b\[/)

      const ctrName = `agentimg-e2e-${language}-${process.pid}`
      const from = await buildah(['from', '--pull-never', '--name', ctrName, res.image])
      expect(from.exitCode, from.stderr).toBe(0)
      try {
        const run = await buildah(['run', ctrName, '--', ...rt.version])
        expect(run.exitCode, run.stderr).toBe(0)
        expect(`${run.stdout}${run.stderr}`.trim()).toMatch(reports)
      } finally {
        await buildah(['rm', ctrName])
      }
    },
    900_000,
  )

  it('a second build of python is served from the cache: the base is not rebuilt and nothing changes', async () => {
    const first = await a(['image', 'build', 'python', '--json'], {timeoutMs: 900_000})
    expect(first.code, first.stderr).toBe(0)
    const baseBefore = await imageId(BASE)
    const one = JSON.parse(first.stdout)
    const second = await a(['image', 'build', 'python', '--json'])
    expect(second.code, second.stderr).toBe(0)
    const two = JSON.parse(second.stdout)
    expect(two).toMatchObject({built: false, baseBuilt: false, id: one.id, baseId: one.baseId})
    expect(await imageId(BASE)).toBe(baseBefore)
    expect(two.baseId).toBe(baseBefore)
    expect(second.stderr).toMatch(/already built/)
    const human = await a(['image', 'build', 'python'])
    expect(human.stdout).toMatch(/localhost\/agent\/python:3\.13 is up to date \(cached\) .*also tagged localhost\/agent\/python:latest/)
  }, 900_000)

  it('python@3.11 builds the bookworm recipe into localhost/agent/python:3.11 only', async () => {
    const latest = await imageId('localhost/agent/python:latest')
    const r = await a(['image', 'build', 'python@3.11', '--json'], {timeoutMs: 900_000})
    expect(r.code, r.stderr).toBe(0)
    const res = JSON.parse(r.stdout)
    expect(res).toMatchObject({language: 'python', version: '3.11', image: 'localhost/agent/python:3.11', tags: ['localhost/agent/python:3.11'], base: BOOKWORM})
    expect(res.recipe).toMatch(/plugins\/python\/Containerfile\.bookworm$/)
    expect(await imageId('localhost/agent/python:latest')).toBe(latest)
    const ctrName = `agentimg-e2e-py311-${process.pid}`
    expect((await buildah(['from', '--pull-never', '--name', ctrName, res.image])).exitCode).toBe(0)
    try {
      const run = await buildah(['run', ctrName, '--', 'python3', '--version'])
      expect(run.stdout.trim()).toMatch(/^Python 3\.11\./)
    } finally {
      await buildah(['rm', ctrName])
    }
  }, 900_000)

  it('a version without an offline recipe, or an unknown one, says which versions build', async () => {
    const none = await a(['image', 'build', 'python@3.12'])
    expect(none.code).toBe(5)
    expect(none.stderr).toMatch(/python@3\.12 has no offline recipe/)
    expect(none.stderr).toMatch(/build one of python@3\.13, python@3\.11/)
    const unknown = await a(['image', 'build', 'node@16'])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(/unknown node version "16"\. Known versions: 24 \(default, image only\), 22 \(image only\), 20, 18/)
  })

  it('an unknown language is a usage error', async () => {
    const r = await a(['image', 'build', 'cobol'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/unknown language "cobol"/)
  })
})

describe('agent image list / rm', () => {
  it('lists the store as a table and as JSON', async () => {
    const t = await a(['image', 'list'])
    expect(t.code, t.stderr).toBe(0)
    expect(t.stdout).toMatch(/^REPOSITORY:TAG\s+ID\s+SIZE\s+CREATED$/m)
    expect(t.stdout).toMatch(/^localhost\/agent\/debian:trixie\s+[0-9a-f]{12}\s+/m)
    expect(t.stdout).toMatch(/^localhost\/agent\/debian:bookworm\s+[0-9a-f]{12}\s+/m)
    const j = await a(['image', 'list', '--json'])
    const rows = JSON.parse(j.stdout) as Array<{name: string; id: string}>
    expect(rows.map((r) => r.name)).toContain(BASE)
  })

  it('rm of an image that does not exist exits 3', async () => {
    const r = await a(['image', 'rm', `localhost/agent/no-such-image-${process.pid}:latest`])
    expect(r.code).toBe(3)
    expect(r.stderr).toMatch(/image not found/)
  })
})

describe('agent image pull', () => {
  const pulls = tempState('agent-pull-')
  const privateEnv = {AGENT_STATE_DIR: pulls.dir, AGENT_IMAGE_STORE: undefined as unknown as string}
  afterAll(async () => {
    const b = new Buildah(imageStore(pulls.dir, {AGENT_STATE_DIR: pulls.dir}))
    await b.run(['rm', '--all'])
    await b.run(['rmi', '--all', '--force'])
    pulls.cleanup()
  })

  it('an unreachable registry exits 7 naming the image, suggests the offline build, and leaves nothing behind', async () => {
    const before = await agent(['image', 'list', '--json'], {env: privateEnv})
    expect(before.code, before.stderr).toBe(0)
    const r = await agent(['image', 'pull', 'localhost:1/nope:latest'], {env: {...privateEnv, AGENT_PULL_TIMEOUT: '30'}, timeoutMs: 60_000})
    expect(r.code).toBe(7)
    expect(r.stderr).toMatch(/cannot pull localhost:1\/nope:latest/)
    expect(r.stderr).toMatch(/agent image build/)
    const after = await agent(['image', 'list', '--json'], {env: privateEnv})
    expect(JSON.parse(after.stdout)).toEqual(JSON.parse(before.stdout))
    const b = new Buildah(imageStore(pulls.dir, {AGENT_STATE_DIR: pulls.dir}))
    expect(await b.containers()).toEqual([])
  })

  it("a runtime's default image that cannot be pulled points at `agent image build <that language>`", async () => {
    // A dead proxy makes docker.io unreachable whatever this host's network allows.
    const dead = {HTTPS_PROXY: 'http://127.0.0.1:1', https_proxy: 'http://127.0.0.1:1', NO_PROXY: '', no_proxy: ''}
    const r = await agent(['image', 'pull', python.image], {env: {...privateEnv, ...dead, AGENT_PULL_TIMEOUT: '30'}, timeoutMs: 60_000})
    expect(r.code).toBe(7)
    expect(r.stderr).toContain(`cannot pull ${python.image}`)
    expect(r.stderr).toMatch(/Hint: build it offline with `agent image build python`/)
  })

  it('refuses bad references with exit 2 before buildah ever runs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentimg-fake-'))
    try {
      const calls = join(dir, 'calls')
      const fake = join(dir, 'buildah')
      writeFileSync(fake, `#!/bin/sh\necho "$@" >> '${calls}'\nexit 1\n`)
      chmodSync(fake, 0o755)
      const pwned = `/tmp/agentimg-pwned-${process.pid}`
      for (const args of [
        ['image', 'pull', 'a b'],
        ['image', 'pull', '../x'],
        ['image', 'pull', `$(touch ${pwned})`],
        ['image', 'pull', '$(touch /tmp/pwned)'],
        ['image', 'rm', '../x'],
      ]) {
        const r = await agent(args, {env: {...privateEnv, AGENT_BUILDAH: fake}})
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2)
        expect(r.stderr).toMatch(/invalid image reference/)
      }
      expect(existsSync(calls)).toBe(false)
      expect(existsSync(pwned)).toBe(false)
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })
})

describe('storage isolation', () => {
  it('with AGENT_STATE_DIR set, listing, pulling, building and removing images write nothing under /var/lib/containers', async () => {
    const state = mkdtempSync(join('/var/tmp', 'agent-iso-'))
    const env = {AGENT_STATE_DIR: state, AGENT_IMAGE_STORE: undefined as unknown as string}
    const b = new Buildah(imageStore(state, {AGENT_STATE_DIR: state}))
    const before = snapshot('/var/lib/containers')
    try {
      expect((await agent(['image', 'list'], {env})).stdout).toMatch(/No images/)
      expect((await agent(['image', 'pull', 'localhost:1/nope:latest'], {env, timeoutMs: 60_000})).code).toBe(7)
      // A small build through the service layer: a scratch container committed as an image.
      const ctr = await b.fromScratch(`agentimg-iso-${process.pid}`)
      await b.config(ctr, ['--cmd', '/bin/true'])
      await b.commit(ctr, 'localhost/agent/iso-test:latest')
      const list = await agent(['image', 'list', '--json'], {env})
      expect((JSON.parse(list.stdout) as Array<{name: string}>).map((r) => r.name)).toEqual(['localhost/agent/iso-test:latest'])
      expect((await agent(['image', 'rm', 'localhost/agent/iso-test:latest'], {env})).code).toBe(0)
      expect(existsSync(join(state, 'containers', 'storage'))).toBe(true)
      expect(snapshot('/var/lib/containers')).toEqual(before)
    } finally {
      await b.run(['rm', '--all'])
      await b.run(['rmi', '--all', '--force'])
      rmSync(state, {recursive: true, force: true})
    }
  })
})
