import type {RuntimeDeclaration} from '@agent/runtime-kit'
import {fileURLToPath} from 'node:url'

const recipe = (name: string) => fileURLToPath(new URL(`../${name}`, import.meta.url))

export const runtime: RuntimeDeclaration = {
  language: 'node',
  aliases: ['javascript', 'js', 'nodejs'],
  description: 'Node.js',
  // Newest first. 24 is the active LTS; Debian packages 20 (trixie) and 18 (bookworm), so
  // `agent image build node` builds node@20.
  versions: [
    {id: '24', image: 'docker.io/library/node:24-slim', default: true},
    {id: '22', image: 'docker.io/library/node:22-slim'},
    {id: '20', image: 'docker.io/library/node:20-slim', recipe: recipe('Containerfile')},
    {id: '18', image: 'docker.io/library/node:18-slim', recipe: recipe('Containerfile.bookworm')},
  ],
  hello: ['node', '-e', 'console.log(`hello from node ${process.version}`)'],
  version: ['node', '--version'],
  repl: ['node'],
  fileRun: {'.js': ['node', '{file}'], '.mjs': ['node', '{file}'], '.cjs': ['node', '{file}']},
  env: {NODE_ENV: 'production'},
}
