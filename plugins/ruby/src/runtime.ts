import type {RuntimeDeclaration} from '@agent/runtime-kit'
import {fileURLToPath} from 'node:url'

const recipe = (name: string) => fileURLToPath(new URL(`../${name}`, import.meta.url))

export const runtime: RuntimeDeclaration = {
  language: 'ruby',
  aliases: ['rb'],
  description: 'Ruby (MRI)',
  // Newest first. Debian 13 (trixie) packages 3.3, so `agent image build ruby` builds ruby@3.3.
  versions: [
    {id: '3.4', image: 'docker.io/library/ruby:3.4-slim', default: true},
    {id: '3.3', image: 'docker.io/library/ruby:3.3-slim', recipe: recipe('Containerfile')},
  ],
  hello: ['ruby', '-e', 'puts "hello from ruby #{RUBY_VERSION}"'],
  version: ['ruby', '--version'],
  repl: ['irb'],
  fileRun: {'.rb': ['ruby', '{file}']},
}
