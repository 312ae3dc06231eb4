import {readFileSync} from 'node:fs'
import {defineRuntime, fileRunArgv, recipeDebianBase, verifyRuntimePlugin} from '@agent/runtime-kit'
import {describe, expect, it} from 'vitest'
import hook from './hooks/runtimes.js'
import {runtime} from './runtime.js'

describe('node runtime plugin', () => {
  it('declares a valid runtime with recipes on the agent Debian bases', async () => {
    expect(await verifyRuntimePlugin(hook)).toEqual([])
  })

  it('runs .mjs files with node', () => {
    expect(fileRunArgv(defineRuntime(runtime), '/in/main.mjs')[0]).toBe('node')
  })

  it('defaults to node@24; `agent image build node` builds node@20 on trixie', () => {
    const r = defineRuntime(runtime)
    expect(r).toMatchObject({defaultVersion: '24', offlineVersion: '20'})
    expect(r.image).toMatch(/^docker\.io\/library\/node:[0-9][0-9a-z.-]*$/)
    const suites = r.versions.filter((v) => v.recipe).map((v) => [v.id, recipeDebianBase(readFileSync(v.recipe!, 'utf8'))?.suite])
    expect(suites).toEqual([['20', 'trixie'], ['18', 'bookworm']])
  })
})
