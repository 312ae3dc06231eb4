import {existsSync} from 'node:fs'
import {AGENT_BIN, ROOT} from './agent.js'
import {join} from 'node:path'

// End-to-end tests run the built CLI; `npm test` builds first. Fail loudly rather than test stale code.
export default function setup(): void {
  if (!existsSync(join(ROOT, 'packages/cli/dist/commands')) || !existsSync(AGENT_BIN)) {
    throw new Error('packages/cli is not built: run `npm run build` (npm test does this for you)')
  }
}
