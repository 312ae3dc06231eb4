import {readFileSync} from 'node:fs'
import {defineRuntime, fileRunArgv, recipeDebianBase, verifyRuntimePlugin} from '@agent/runtime-kit'
import {describe, expect, it} from 'vitest'
import hook from './hooks/runtimes.js'
import {runtime} from './runtime.js'

describe('ruby runtime plugin', () => {
  it('declares a valid runtime with recipes on the agent Debian bases', async () => {
    expect(await verifyRuntimePlugin(hook)).toEqual([])
  })

  it('runs .rb files with ruby', () => {
    expect(fileRunArgv(defineRuntime(runtime), '/in/main.rb')[0]).toBe('ruby')
  })

  it('defaults to ruby@3.4; `agent image build ruby` builds ruby@3.3 on trixie', () => {
    const r = defineRuntime(runtime)
    expect(r).toMatchObject({defaultVersion: '3.4', offlineVersion: '3.3'})
    expect(r.image).toMatch(/^docker\.io\/library\/ruby:[0-9][0-9a-z.-]*$/)
    const suites = r.versions.filter((v) => v.recipe).map((v) => [v.id, recipeDebianBase(readFileSync(v.recipe!, 'utf8'))?.suite])
    expect(suites).toEqual([['3.3', 'trixie']])
  })
})
