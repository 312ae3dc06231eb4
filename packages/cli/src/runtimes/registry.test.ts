import {defineRuntime} from '@agent/runtime-kit'
import {describe, expect, it} from 'vitest'
import {RuntimeRegistry, describeVersions, languageLabel, parseLanguageRef} from './registry.js'

const plugin = {name: '@agent/runtime-python', version: '0.1.0', type: 'core'}
const python = defineRuntime({
  language: 'python',
  aliases: ['py'],
  versions: [
    {id: '3.13', image: 'docker.io/library/python:3.13-slim', recipe: '/r/Containerfile', default: true},
    {id: '3.12', image: 'docker.io/library/python:3.12-slim'},
    {id: '3.11', image: 'docker.io/library/python:3.11-slim', recipe: '/r/Containerfile.bookworm'},
  ],
  hello: ['python3', '-V'],
  version: ['python3', '-V'],
  fileRun: {'.py': ['python3', '{file}']},
})
const perl = defineRuntime({language: 'perl', image: 'docker.io/library/perl:5', hello: ['perl', '-v'], version: ['perl', '-v'], fileRun: {'.pl': ['perl', '{file}']}})
const reg = new RuntimeRegistry([{runtime: python, plugin}, {runtime: perl, plugin: {name: 'agent-runtime-perl', version: '1.0.0', type: 'user'}}], [])

function usage(fn: () => unknown): {message: string; hint?: string; exitCode: number} {
  try {
    fn()
  } catch (err) {
    expect(err).toMatchObject({kind: 'usage', exitCode: 2})
    return err as {message: string; hint?: string; exitCode: number}
  }
  throw new Error('expected a usage error')
}

describe('parseLanguageRef', () => {
  it('splits language@version', () => {
    expect(parseLanguageRef('python')).toEqual({language: 'python'})
    expect(parseLanguageRef('python@3.12')).toEqual({language: 'python', version: '3.12'})
    expect(parseLanguageRef(' node@22 ')).toEqual({language: 'node', version: '22'})
  })

  it('refuses a missing language or version, or a second @', () => {
    for (const bad of ['python@', '@3.12', 'python@3@4']) expect(usage(() => parseLanguageRef(bad)).message).toMatch(/expected <language> or <language>@<version>/)
  })
})

describe('RuntimeRegistry.select', () => {
  it('gives no version when none is asked for, and the declared one by @ or --version, through aliases too', () => {
    expect(reg.select('python').version).toBeNull()
    expect(reg.select('py@3.12').version).toMatchObject({id: '3.12', image: 'docker.io/library/python:3.12-slim'})
    expect(reg.select('python', '3.11').version?.id).toBe('3.11')
    expect(reg.select('python@3.11', '3.11').version?.id).toBe('3.11')
  })

  it('an unknown version is a usage error listing the known ones', () => {
    const err = usage(() => reg.select('python@3.9'))
    expect(err.message).toBe('unknown python version "3.9". Known versions: 3.13 (default), 3.12 (image only), 3.11')
    expect(err.hint).toContain('--language python@3.13')
  })

  it('two different versions, or a version of a runtime without versions, are usage errors', () => {
    expect(usage(() => reg.select('python@3.12', '3.11')).message).toMatch(/ask for different versions/)
    expect(usage(() => reg.select('perl@5')).message).toMatch(/the perl runtime \(agent-runtime-perl@1\.0\.0\) declares no versions/)
    expect(usage(() => reg.select('cobol@1')).message).toMatch(/unknown language "cobol"/)
  })

  it('labels and describes versions', () => {
    expect(languageLabel('python', '3.13')).toBe('python@3.13')
    expect(languageLabel('perl', null)).toBe('perl')
    expect(describeVersions(python)).toBe('3.13 (default), 3.12 (image only), 3.11')
  })
})
