import {readFileSync} from 'node:fs'
import {defineRuntime, fileRunArgv, recipeDebianBase, verifyRuntimePlugin} from '@agent/runtime-kit'
import {describe, expect, it} from 'vitest'
import hook from './hooks/runtimes.js'
import {runtime} from './runtime.js'

describe('python runtime plugin', () => {
  it('declares a valid runtime with recipes on the agent Debian bases', async () => {
    expect(await verifyRuntimePlugin(hook)).toEqual([])
  })

  it('runs .py files with python3', () => {
    expect(fileRunArgv(defineRuntime(runtime), '/in/main.py')[0]).toBe('python3')
  })

  it('defaults to python@3.13; `agent image build python` builds python@3.13 on trixie', () => {
    const r = defineRuntime(runtime)
    expect(r).toMatchObject({defaultVersion: '3.13', offlineVersion: '3.13'})
    expect(r.image).toMatch(/^docker\.io\/library\/python:[0-9][0-9a-z.-]*$/)
    const suites = r.versions.filter((v) => v.recipe).map((v) => [v.id, recipeDebianBase(readFileSync(v.recipe!, 'utf8'))?.suite])
    expect(suites).toEqual([['3.13', 'trixie'], ['3.11', 'bookworm']])
  })
})
