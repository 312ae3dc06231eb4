import {mkdtempSync, readFileSync, readdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {agent} from '../helpers/agent.js'

// Shell completion through @oclif/plugin-autocomplete: the generated scripts know the commands and their flags.
describe('shell completion', () => {
  const cache = mkdtempSync(join(tmpdir(), 'agent-complete-'))
  afterAll(() => rmSync(cache, {recursive: true, force: true}))

  it.each(['bash', 'zsh'])('writes a %s completion that knows vm cp, inspect, snapshot and their flags', async (shell) => {
    const r = await agent(['autocomplete', shell], {env: {XDG_CACHE_HOME: cache, HOME: cache}})
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/agent autocomplete script/)
    const dir = join(cache, 'agent', 'autocomplete', 'functions', shell)
    const text = readdirSync(dir).map((f) => readFileSync(join(dir, f), 'utf8')).join('\n')
    for (const word of ['snapshot', 'inspect', 'cp', '--max-size', '--tag', '--vm']) expect(text).toContain(word)
    const script = await agent(['autocomplete', 'script', shell], {env: {XDG_CACHE_HOME: cache, HOME: cache}})
    expect(script.code).toBe(0)
    expect(script.stdout).toContain(join(cache, 'agent', 'autocomplete'))
  })
})
