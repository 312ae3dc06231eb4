import {defineRuntime, fileRunArgv, verifyRuntimePlugin} from '@agent/runtime-kit'
import {describe, expect, it} from 'vitest'
import hook from './hooks/runtimes.js'
import {runtime} from './runtime.js'

describe('python runtime plugin', () => {
  it('declares a valid runtime with a recipe on the Debian base', async () => {
    expect(await verifyRuntimePlugin(hook)).toEqual([])
  })

  it('runs .py files with python3', () => {
    expect(fileRunArgv(defineRuntime(runtime), '/in/main.py')[0]).toBe('python3')
  })
})
