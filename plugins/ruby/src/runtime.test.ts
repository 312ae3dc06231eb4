import {existsSync, readFileSync} from 'node:fs'
import {defineRuntime, fileRunArgv} from '@agent/runtime-kit'
import {describe, expect, it} from 'vitest'
import hook from './hooks/runtimes.js'
import {runtime} from './runtime.js'

describe('ruby runtime plugin', () => {
  it('declares a valid runtime through its hook', async () => {
    const r = defineRuntime((await hook()) as typeof runtime)
    expect(r.language).toBe('ruby')
    expect(r.recipe && existsSync(r.recipe)).toBe(true)
    expect(readFileSync(r.recipe!, 'utf8')).toMatch(/^FROM localhost\/agent\/debian:bookworm$/m)
    for (const [ext, argv] of Object.entries(r.fileRun)) expect(fileRunArgv(r, `/in/main${ext}`)).toContain(`/in/main${ext}`)
    expect(argv(r.hello).length).toBeGreaterThan(0)
  })
})

function argv(a: readonly string[]): string[] {
  return [...a]
}
