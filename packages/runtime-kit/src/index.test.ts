import {describe, expect, it} from 'vitest'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll} from 'vitest'
import {
  DEBIAN_SUITES,
  defineRuntime,
  fileRunArgv,
  findVersion,
  InvalidRuntimeError,
  isValidImageRef,
  recipeDebianBase,
  verifyRuntimePlugin,
  type RuntimeDeclaration,
} from './index.js'

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

describe('versions', () => {
  const {image: _image, ...noImage} = good
  const versioned: RuntimeDeclaration = {
    ...noImage,
    versions: [
      {id: '5.40', image: 'docker.io/library/perl:5.40-slim'},
      {id: '5.36', image: 'docker.io/library/perl:5.36-slim', recipe: '/recipes/5.36/Containerfile'},
    ],
  }

  it('without versions: no version ids, image and recipe as declared', () => {
    expect(defineRuntime(good)).toMatchObject({versions: [], defaultVersion: null, offlineVersion: null, image: good.image})
  })

  it('the first version is the default unless one says so; image is the default version\'s, recipe the offline version\'s', () => {
    const r = defineRuntime(versioned)
    expect(r).toMatchObject({defaultVersion: '5.40', offlineVersion: '5.36', image: 'docker.io/library/perl:5.40-slim', recipe: '/recipes/5.36/Containerfile'})
    expect(r.versions.map((v) => [v.id, v.default])).toEqual([['5.40', true], ['5.36', false]])
    const marked = defineRuntime({...versioned, versions: [versioned.versions![0], {...versioned.versions![1], default: true}]})
    expect(marked).toMatchObject({defaultVersion: '5.36', offlineVersion: '5.36', image: 'docker.io/library/perl:5.36-slim'})
    expect(findVersion(r, '5.36')?.image).toBe('docker.io/library/perl:5.36-slim')
    expect(findVersion(r, '5.8')).toBeUndefined()
  })

  it('lists every problem of bad versions', () => {
    const bad = {
      ...versioned,
      image: 'docker.io/library/perl:5',
      versions: [
        {id: '5.40', image: 'a b', default: true},
        {id: '5.40', image: 'docker.io/library/perl:5.40', recipe: 'relative/Containerfile', default: true},
        {id: 'v@1', image: 'docker.io/library/perl:1'},
      ],
    } as RuntimeDeclaration
    expect(() => defineRuntime(bad)).toThrow(InvalidRuntimeError)
    const msg = (() => {
      try {
        defineRuntime(bad)
      } catch (err) {
        return (err as Error).message
      }
    })()
    for (const part of ['image must be left out when versions are given', 'version "5.40": image must be an image reference', 'version "5.40" is declared twice', 'recipe must be an absolute path', 'version id must match', 'only one version may be the default'])
      expect(msg).toContain(part)
    expect(() => defineRuntime({...versioned, versions: []})).toThrow(/versions must be a non-empty list/)
    expect(() => defineRuntime({...noImage} as RuntimeDeclaration)).toThrow(/image must be an image reference/)
  })
})

describe('recipes on the Debian bases', () => {
  const dir = mkdtempSync(join(tmpdir(), 'runtime-kit-'))
  afterAll(() => rmSync(dir, {recursive: true, force: true}))
  const recipe = (name: string, text: string) => {
    const file = join(dir, name)
    writeFileSync(file, text)
    return file
  }

  it('reads the suite from the FROM line', () => {
    expect(DEBIAN_SUITES).toEqual(['trixie', 'bookworm'])
    expect(recipeDebianBase('# c\nFROM localhost/agent/debian:trixie\nRUN x\n')).toEqual({ref: 'localhost/agent/debian:trixie', suite: 'trixie', supported: true})
    expect(recipeDebianBase('FROM --platform=linux/amd64 localhost/agent/debian:bookworm AS b\n')).toMatchObject({suite: 'bookworm', supported: true})
    expect(recipeDebianBase('FROM localhost/agent/debian:bullseye\n')).toMatchObject({suite: 'bullseye', supported: false})
    expect(recipeDebianBase('FROM docker.io/library/debian:trixie\n')).toBeUndefined()
  })

  it('accepts trixie and bookworm recipes, and names what to change in any other', async () => {
    for (const suite of DEBIAN_SUITES) {
      const file = recipe(`${suite}.Containerfile`, `FROM localhost/agent/debian:${suite}\nRUN true\n`)
      expect(await verifyRuntimePlugin(async () => ({...good, recipe: file}))).toEqual([])
    }
    const old = recipe('bullseye.Containerfile', 'FROM localhost/agent/debian:bullseye\n')
    expect(await verifyRuntimePlugin(async () => ({...good, recipe: old}))).toEqual([
      `perl: recipe ${old} starts FROM localhost/agent/debian:bullseye, a suite agent does not build: change that line to FROM localhost/agent/debian:trixie (supported suites: trixie, bookworm)`,
    ])
    const other = recipe('other.Containerfile', 'FROM docker.io/library/debian:trixie\n')
    expect((await verifyRuntimePlugin(async () => ({...good, recipe: other})))[0]).toMatch(/must start FROM localhost\/agent\/debian:<suite> \(trixie or bookworm/)
  })

  it('checks the recipe of every version', async () => {
    const {image: _image, ...noImage} = good
    const ok = recipe('ok.Containerfile', 'FROM localhost/agent/debian:trixie\n')
    const problems = await verifyRuntimePlugin(async () => ({
      ...noImage,
      versions: [
        {id: '2', image: 'docker.io/library/perl:2', recipe: ok},
        {id: '1', image: 'docker.io/library/perl:1', recipe: join(dir, 'missing.Containerfile')},
      ],
    }))
    expect(problems).toEqual([`perl@1: recipe ${join(dir, 'missing.Containerfile')} does not exist`])
  })
})
