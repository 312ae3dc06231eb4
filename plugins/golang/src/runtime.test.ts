import {readFileSync} from 'node:fs'
import {defineRuntime, fileRunArgv, recipeDebianBase, verifyRuntimePlugin} from '@agent/runtime-kit'
import {describe, expect, it} from 'vitest'
import hook from './hooks/runtimes.js'
import {runtime} from './runtime.js'

describe('golang runtime plugin', () => {
  it('declares a valid runtime with recipes on the agent Debian bases', async () => {
    expect(await verifyRuntimePlugin(hook)).toEqual([])
  })

  it('runs .go files with go', () => {
    expect(fileRunArgv(defineRuntime(runtime), '/in/main.go')[0]).toBe('go')
  })

  it('defaults to golang@1.27; `agent image build golang` builds golang@1.24 on trixie', () => {
    const r = defineRuntime(runtime)
    expect(r).toMatchObject({defaultVersion: '1.27', offlineVersion: '1.24'})
    expect(r.image).toMatch(/^docker\.io\/library\/golang:[0-9][0-9a-z.-]*$/)
    const suites = r.versions.filter((v) => v.recipe).map((v) => [v.id, recipeDebianBase(readFileSync(v.recipe!, 'utf8'))?.suite])
    expect(suites).toEqual([['1.24', 'trixie']])
  })
})
