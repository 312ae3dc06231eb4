import type {RuntimeDeclaration} from '@agent/runtime-kit'
import {fileURLToPath} from 'node:url'

export const runtime: RuntimeDeclaration = {
  language: 'node',
  aliases: ['javascript', 'js', 'nodejs'],
  description: 'Node.js',
  image: 'docker.io/library/node:20-slim',
  recipe: fileURLToPath(new URL('../Containerfile', import.meta.url)),
  hello: ['node', '-e', 'console.log(`hello from node ${process.version}`)'],
  version: ['node', '--version'],
  fileRun: {'.js': ['node', '{file}'], '.mjs': ['node', '{file}'], '.cjs': ['node', '{file}']},
  env: {NODE_ENV: 'production'},
}
