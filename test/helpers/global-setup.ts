import {execFileSync} from 'node:child_process'
import {existsSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {AGENT_BIN, ROOT, TEST_IMAGE_STORE} from './agent.js'

// End-to-end tests run the built CLI; `npm test` builds first. Fail loudly rather than test stale code.
// They boot the four language images from one shared store: build what is missing (about
// 5 minutes on a fresh machine, a few seconds when cached), so `npm test` needs nothing else.
export default function setup(): void {
  if (!existsSync(join(ROOT, 'packages/cli/dist/commands')) || !existsSync(AGENT_BIN)) {
    throw new Error('packages/cli is not built: run `npm run build` (npm test does this for you)')
  }
  const state = mkdtempSync(join(tmpdir(), 'agent-test-images-'))
  try {
    execFileSync('bash', [join(ROOT, 'scripts/build-images.sh')], {
      env: {...process.env, AGENT_STATE_DIR: state, AGENT_IMAGE_STORE: TEST_IMAGE_STORE},
      stdio: ['ignore', 'ignore', 'inherit'],
    })
  } finally {
    rmSync(state, {recursive: true, force: true})
  }
}
