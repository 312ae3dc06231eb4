import {describe, expect, it} from 'vitest'
import {defineRuntime, fileRunArgv, InvalidRuntimeError, isValidImageRef, verifyRuntimePlugin, type RuntimeDeclaration} from './index.js'

const good: RuntimeDeclaration = {
  language: 'perl',
  aliases: ['pl'],
  image: 'docker.io/library/perl:5-slim',
  hello: ['perl', '-e', 'print "hi\\n"'],
  version: ['perl', '-v'],
  fileRun: {'.pl': ['perl', '{file}']},
}

describe('defineRuntime', () => {
  it('accepts a good declaration and fills defaults', () => {
    const r = defineRuntime(good)
    expect(r.preferred).toBe(false)
    expect(r.env).toEqual({})
    expect(fileRunArgv(r, '/in/main.pl')).toEqual(['perl', '/in/main.pl'])
    expect(() => fileRunArgv(r, '/in/main.py')).toThrow(/does not know how to run ".py" files \(it runs: .pl\)/)
  })

  it('lists every problem of a bad declaration', () => {
    const bad = {...good, language: 'Perl!', image: 'a b', hello: [], fileRun: {pl: ['perl']}, env: {'1x': 'y'}} as unknown as RuntimeDeclaration
    try {
      defineRuntime(bad)
      expect.unreachable()
    } catch (err) {
      expect(err).toBeInstanceOf(InvalidRuntimeError)
      const msg = (err as Error).message
      for (const part of ['language must match', 'image must be an image reference', 'hello must be', 'extension "pl"', 'must use {file}', 'env "1x"'])
        expect(msg).toContain(part)
    }
  })

  it('validates image references', () => {
    for (const ok of ['python:3.11-slim', 'docker.io/library/node:20-slim', 'localhost/agent/python:latest', 'localhost:5000/a/b@sha256:' + 'a'.repeat(64)])
      expect(isValidImageRef(ok)).toBe(true)
    for (const bad of ['a b', '../x', '$(touch /tmp/pwned)', 'UPPER/case', '', '-rf', 'a;b'])
      expect(isValidImageRef(bad)).toBe(false)
  })
})

describe('verifyRuntimePlugin', () => {
  it('reports a missing recipe and a bad declaration, and passes a good one', async () => {
    expect(await verifyRuntimePlugin(async () => good)).toEqual([])
    expect(await verifyRuntimePlugin(async () => ({...good, recipe: '/nonexistent/Containerfile'}))).toEqual([
      'perl: recipe /nonexistent/Containerfile does not exist',
    ])
    const bad = await verifyRuntimePlugin(async () => [{...good, image: 'a b'}])
    expect(bad[0]).toMatch(/image must be an image reference/)
    expect(await verifyRuntimePlugin(async () => [])).toEqual(['the hook returned no runtime'])
  })
})
