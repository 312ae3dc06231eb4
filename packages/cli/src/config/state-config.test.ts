import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {configSection} from './state-config.js'

const root = mkdtempSync(join(tmpdir(), 'agent-state-config-'))
afterAll(() => rmSync(root, {recursive: true, force: true}))
const withConfig = (text: string) => writeFileSync(join(root, 'config.json'), text)

describe('config.json sections', () => {
  it('an absent file or key is {}; a present object is returned as it is', () => {
    expect(configSection(root, 'pool')).toEqual({})
    withConfig('null')
    expect(configSection(root, 'pool')).toEqual({})
    withConfig('{"pool": {"python": 2}}')
    expect(configSection(root, 'pool')).toEqual({python: 2})
    expect(configSection(root, 'mcp')).toEqual({})
  })

  it('a broken file or a key that is not an object is a usage error naming the file', () => {
    withConfig('{nope')
    expect(() => configSection(root, 'pool')).toThrow(/config\.json is not valid JSON/)
    for (const v of ['[]', '3', '"x"', 'null']) {
      withConfig(`{"pool": ${v}}`)
      expect(() => configSection(root, 'pool', 'an object such as {"python": 2}')).toThrow(/"pool" in .*config\.json must be an object such as \{"python": 2\}/)
    }
  })
})
