#!/usr/bin/env node
// Builds everything `agent` needs to run from this checkout: TypeScript (project references), the
// CLI's start-up dependencies bundled (scripts/bundle.mjs), the oclif manifest (so start-up does not
// load every command file), and the static guest init.
import {execFileSync} from 'node:child_process'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {bundleCli} from './bundle.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const run = (cmd, args, cwd = root) => {
  console.error(`build: ${cmd} ${args.join(' ')}`)
  execFileSync(cmd, args, {cwd, stdio: 'inherit'})
}

run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-b', 'tsconfig.json'])
console.error('build: bundle the CLI\'s start-up dependencies (esbuild)')
console.error(`build: ${await bundleCli(join(root, 'packages/cli'))} newly emitted files of packages/cli/dist pointed at dist/vendor/`)
run(process.execPath, [join(root, 'node_modules/oclif/bin/run.js'), 'manifest'], join(root, 'packages/cli'))
run('bash', [join(root, 'guest/build.sh')])
