import type {RuntimeDeclaration} from '@agent/runtime-kit'
import {fileURLToPath} from 'node:url'

const recipe = (name: string) => fileURLToPath(new URL(`../${name}`, import.meta.url))

export const runtime: RuntimeDeclaration = {
  language: 'python',
  aliases: ['py', 'python3'],
  description: 'CPython 3',
  // Newest first. Offline recipes where Debian packages that version: 3.13 in trixie, 3.11 in bookworm.
  versions: [
    {id: '3.13', image: 'docker.io/library/python:3.13-slim', recipe: recipe('Containerfile'), default: true},
    {id: '3.12', image: 'docker.io/library/python:3.12-slim'},
    {id: '3.11', image: 'docker.io/library/python:3.11-slim', recipe: recipe('Containerfile.bookworm')},
  ],
  hello: ['python3', '-c', 'import sys; print(f"hello from python {sys.version.split()[0]}")'],
  version: ['python3', '--version'],
  repl: ['python3'],
  fileRun: {'.py': ['python3', '{file}']},
  env: {PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1'},
}
