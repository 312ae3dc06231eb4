import {defineRuntime, fileRunArgv, verifyRuntimePlugin} from '@agent/runtime-kit'
import {describe, expect, it} from 'vitest'
import hook from './hooks/runtimes.js'
import {runtime} from './runtime.js'

describe('ruby runtime plugin', () => {
  it('declares a valid runtime with a recipe on the Debian base', async () => {
    expect(await verifyRuntimePlugin(hook)).toEqual([])
  })

  it('runs .rb files with ruby', () => {
    expect(fileRunArgv(defineRuntime(runtime), '/in/main.rb')[0]).toBe('ruby')
  })
})
