#!/usr/bin/env node
// Builds everything `agent` needs to run from this checkout: TypeScript (project references),
// the oclif manifest (so start-up does not load every command file), and the static guest init.
import {execFileSync} from 'node:child_process'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const run = (cmd, args, cwd = root) => {
  console.error(`build: ${cmd} ${args.join(' ')}`)
  execFileSync(cmd, args, {cwd, stdio: 'inherit'})
}

run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-b', 'tsconfig.json'])
run(process.execPath, [join(root, 'node_modules/oclif/bin/run.js'), 'manifest'], join(root, 'packages/cli'))
run('bash', [join(root, 'guest/build.sh')])
