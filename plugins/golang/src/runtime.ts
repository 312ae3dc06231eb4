import type {RuntimeDeclaration} from '@agent/runtime-kit'
import {fileURLToPath} from 'node:url'

const recipe = (name: string) => fileURLToPath(new URL(`../${name}`, import.meta.url))

export const runtime: RuntimeDeclaration = {
  language: 'golang',
  aliases: ['go'],
  description: 'Go toolchain',
  // Newest first. Debian 13 (trixie) packages 1.24, so `agent image build golang` builds golang@1.24.
  versions: [
    {id: '1.27', image: 'docker.io/library/golang:1.27-trixie', default: true},
    {id: '1.24', image: 'docker.io/library/golang:1.24-trixie', recipe: recipe('Containerfile')},
  ],
  // `go version` needs no build cache, so hello stays fast.
  hello: ['sh', '-c', 'echo "hello from golang $(go env GOVERSION)"'],
  version: ['go', 'version'],
  // /in is read-only and $HOME may be too: caches go to /tmp, which is the VM's own disk.
  fileRun: {'.go': ['go', 'run', '{file}']},
  env: {GOCACHE: '/tmp/.agent-go/cache', GOPATH: '/tmp/.agent-go/path', GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local', CGO_ENABLED: '0'},
}
