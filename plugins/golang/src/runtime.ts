import type {RuntimeDeclaration} from '@agent/runtime-kit'
import {fileURLToPath} from 'node:url'

export const runtime: RuntimeDeclaration = {
  language: 'golang',
  aliases: ['go'],
  description: 'Go toolchain',
  image: 'docker.io/library/golang:1.22-bookworm',
  recipe: fileURLToPath(new URL('../Containerfile', import.meta.url)),
  // `go version` needs no build cache, so hello stays fast.
  hello: ['sh', '-c', 'echo "hello from golang $(go env GOVERSION)"'],
  version: ['go', 'version'],
  // /in is read-only and $HOME may be too: caches go to /tmp, which is the VM's own disk.
  fileRun: {'.go': ['go', 'run', '{file}']},
  env: {GOCACHE: '/tmp/.agent-go/cache', GOPATH: '/tmp/.agent-go/path', GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local', CGO_ENABLED: '0'},
}
