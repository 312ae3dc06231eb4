import type {RuntimeDeclaration} from '@agent/runtime-kit'
import {fileURLToPath} from 'node:url'

export const runtime: RuntimeDeclaration = {
  language: 'ruby',
  aliases: ['rb'],
  description: 'Ruby (MRI)',
  image: 'docker.io/library/ruby:3.2-slim',
  recipe: fileURLToPath(new URL('../Containerfile', import.meta.url)),
  hello: ['ruby', '-e', 'puts "hello from ruby #{RUBY_VERSION}"'],
  version: ['ruby', '--version'],
  fileRun: {'.rb': ['ruby', '{file}']},
}
