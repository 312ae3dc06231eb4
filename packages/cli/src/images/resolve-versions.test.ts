// Image choice and offline build targets for runtimes that declare versions. No buildah: the
// store is a set of names (chooseImage only asks whether an image exists).
import {defineRuntime, findVersion, type Runtime} from '@agent/runtime-kit'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {buildTarget, recipeBase, runtimeVersionForImage} from '../services/image-service.js'
import type {Buildah} from './buildah.js'
import {chooseImage, imageEnvVar, localImageName} from './resolve.js'

const dir = mkdtempSync(join(tmpdir(), 'agent-versions-'))
afterAll(() => rmSync(dir, {recursive: true, force: true}))
const recipe = (name: string, text: string) => {
  const file = join(dir, name)
  writeFileSync(file, text)
  return file
}
const trixie = recipe('Containerfile', 'FROM localhost/agent/debian:trixie\nRUN true\n')
const bookworm = recipe('Containerfile.bookworm', 'FROM localhost/agent/debian:bookworm\nRUN true\n')

// Like the node plugin: the default version has no recipe, two older ones do.
const node = defineRuntime({
  language: 'node',
  versions: [
    {id: '24', image: 'docker.io/library/node:24-slim', default: true},
    {id: '22', image: 'docker.io/library/node:22-slim'},
    {id: '20', image: 'docker.io/library/node:20-slim', recipe: trixie},
    {id: '18', image: 'docker.io/library/node:18-slim', recipe: bookworm},
  ],
  hello: ['node', '-v'],
  version: ['node', '-v'],
  fileRun: {'.js': ['node', '{file}']},
})
// Like the python plugin: the default version has a recipe.
const python = defineRuntime({
  language: 'python',
  versions: [
    {id: '3.13', image: 'docker.io/library/python:3.13-slim', recipe: trixie},
    {id: '3.12', image: 'docker.io/library/python:3.12-slim'},
    {id: '3.11', image: 'docker.io/library/python:3.11-slim', recipe: bookworm},
  ],
  hello: ['python3', '-V'],
  version: ['python3', '-V'],
  fileRun: {'.py': ['python3', '{file}']},
})

const store = (...names: string[]) => ({imageExists: async (ref: string) => names.includes(ref)}) as unknown as Buildah
const stateRoot = mkdtempSync(join(dir, 'state-'))
const choose = (rt: Runtime, version: string | undefined, names: string[], o: {env?: NodeJS.ProcessEnv; flagImage?: string} = {}) =>
  chooseImage({language: rt.language, runtime: rt, version: version ? findVersion(rt, version) : null, buildah: store(...names), stateRoot, env: o.env ?? {}, flagImage: o.flagImage})

describe('chooseImage with versions', () => {
  it('a version asked for boots its own local build, else its own remote image', async () => {
    expect(await choose(python, '3.11', [localImageName('python', '3.11'), localImageName('python', '3.13')])).toMatchObject({
      image: 'localhost/agent/python:3.11',
      source: 'local',
      version: '3.11',
      reason: 'localhost/agent/python:3.11: built locally by `agent image build python@3.11`',
    })
    expect(await choose(python, '3.12', [localImageName('python', '3.13')])).toMatchObject({
      image: 'docker.io/library/python:3.12-slim',
      source: 'remote',
      version: '3.12',
      buildRef: null,
      reason: expect.stringContaining('python@3.12 has no offline recipe; versions that build offline: 3.13, 3.11'),
    })
  })

  it('without a version: the default version, locally built or remote', async () => {
    expect(await choose(python, undefined, [localImageName('python', '3.13'), localImageName('python', '3.11')])).toMatchObject({image: 'localhost/agent/python:3.13', version: '3.13'})
    expect(await choose(python, undefined, [localImageName('python', '3.11')])).toMatchObject({
      image: 'docker.io/library/python:3.13-slim',
      source: 'remote',
      version: '3.13',
      reason: expect.stringContaining('`agent image build python` makes one offline'),
    })
    // A :latest left by an older agent is not trusted to be any particular version.
    expect(await choose(python, undefined, [localImageName('python')])).toMatchObject({source: 'remote'})
  })

  it('without a version, when the default has no recipe: the offline version\'s local build, saying so', async () => {
    const c = await choose(node, undefined, [localImageName('node', '20'), localImageName('node', '18')])
    expect(c).toMatchObject({image: 'localhost/agent/node:20', source: 'local', version: '20', buildRef: 'node'})
    expect(c.reason).toBe('localhost/agent/node:20: built locally by `agent image build node` (the default, node@24, has none)')
    expect(await choose(node, undefined, [localImageName('node', '24'), localImageName('node', '20')])).toMatchObject({image: 'localhost/agent/node:24', version: '24'})
    expect(await choose(node, undefined, [])).toMatchObject({
      image: 'docker.io/library/node:24-slim',
      version: '24',
      buildRef: 'node',
      reason: expect.stringContaining('`agent image build node` makes node@20 offline'),
    })
  })

  it('language-wide overrides apply without a version; a version has its own', async () => {
    writeFileSync(join(stateRoot, 'config.json'), JSON.stringify({images: {python: 'example.org/py:any', 'python@3.12': 'example.org/py:3.12'}}))
    try {
      expect(await choose(python, undefined, [])).toMatchObject({image: 'example.org/py:any', source: 'config', version: null})
      expect(await choose(python, '3.12', [])).toMatchObject({image: 'example.org/py:3.12', source: 'config', version: '3.12'})
      expect(await choose(python, '3.11', [])).toMatchObject({image: 'docker.io/library/python:3.11-slim', source: 'remote'})
    } finally {
      rmSync(join(stateRoot, 'config.json'))
    }
    expect(imageEnvVar('python', '3.12')).toBe('AGENT_IMAGE_PYTHON_3_12')
    const env = {AGENT_IMAGE_PYTHON: 'example.org/env:any', AGENT_IMAGE_PYTHON_3_12: 'example.org/env:3.12'}
    expect(await choose(python, undefined, [], {env})).toMatchObject({image: 'example.org/env:any', source: 'env'})
    expect(await choose(python, '3.12', [], {env})).toMatchObject({image: 'example.org/env:3.12', source: 'env', version: '3.12'})
    expect(await choose(python, '3.11', [], {flagImage: 'example.org/flag:1'})).toMatchObject({image: 'example.org/flag:1', source: 'flag', version: '3.11'})
  })
})

describe('offline build targets', () => {
  it('a plain language builds the offline version, tagged with its version and :latest', () => {
    expect(buildTarget(python)).toEqual({version: '3.13', recipe: trixie, image: 'localhost/agent/python:3.13', tags: ['localhost/agent/python:3.13', 'localhost/agent/python:latest']})
    expect(buildTarget(node)).toMatchObject({version: '20', image: 'localhost/agent/node:20', tags: ['localhost/agent/node:20', 'localhost/agent/node:latest']})
    expect(buildTarget(node, findVersion(node, '18'))).toEqual({version: '18', recipe: bookworm, image: 'localhost/agent/node:18', tags: ['localhost/agent/node:18']})
  })

  it('a version without a recipe is an error naming the versions that have one', () => {
    expect(() => buildTarget(python, findVersion(python, '3.12'))).toThrow(/python@3\.12 has no offline recipe/)
    try {
      buildTarget(python, findVersion(python, '3.12'))
    } catch (err) {
      expect((err as {hint: string}).hint).toBe('pull its image instead: `agent image pull docker.io/library/python:3.12-slim`, or build one of python@3.13, python@3.11')
    }
  })

  it('the base follows the recipe\'s FROM line; an unsupported suite names the line to change', () => {
    expect(recipeBase(trixie)).toEqual({image: 'localhost/agent/debian:trixie', suite: 'trixie'})
    expect(recipeBase(bookworm)).toEqual({image: 'localhost/agent/debian:bookworm', suite: 'bookworm'})
    expect(recipeBase(recipe('scratch', 'FROM scratch\n'))).toBeUndefined()
    const old = recipe('old', 'FROM localhost/agent/debian:buster\n')
    expect(() => recipeBase(old)).toThrow(`recipe ${old} starts FROM localhost/agent/debian:buster, a suite agent does not build: change that line to FROM localhost/agent/debian:trixie`)
  })

  it('maps an image back to its runtime and version', () => {
    expect(runtimeVersionForImage('python:3.11-slim', [node, python])).toMatchObject({runtime: {language: 'python'}, version: {id: '3.11'}})
    expect(runtimeVersionForImage('docker.io/library/node:24-slim', [node, python])).toMatchObject({runtime: {language: 'node'}, version: null})
    expect(runtimeVersionForImage('localhost/agent/node:18', [node, python])?.version?.id).toBe('18')
    expect(runtimeVersionForImage('localhost/agent/node:latest', [node, python])).toMatchObject({version: null})
    expect(runtimeVersionForImage('example.org/x:1', [node, python])).toBeUndefined()
  })
})
