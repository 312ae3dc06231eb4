import type {RuntimeDeclaration} from '@agent/runtime-kit'
import {fileURLToPath} from 'node:url'

export const runtime: RuntimeDeclaration = {
  language: 'python',
  aliases: ['py', 'python3'],
  description: 'CPython 3',
  image: 'docker.io/library/python:3.11-slim',
  recipe: fileURLToPath(new URL('../Containerfile', import.meta.url)),
  hello: ['python3', '-c', 'import sys; print(f"hello from python {sys.version.split()[0]}")'],
  version: ['python3', '--version'],
  fileRun: {'.py': ['python3', '{file}']},
  env: {PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1'},
}
