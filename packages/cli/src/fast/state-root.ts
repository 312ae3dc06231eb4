/**
 * Which state dir a command uses, in the order the README documents. Only node: builtins: the
 * serve route (fast/serve-route.ts) asks it before anything else is loaded.
 */
import {accessSync, constants} from 'node:fs'
import {homedir} from 'node:os'
import {join, resolve} from 'node:path'

/** Where state lives, in the order the README documents. */
export function resolveStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.AGENT_STATE_DIR) return resolve(env.AGENT_STATE_DIR)
  if (canWriteOrCreate('/var/lib/agent')) return '/var/lib/agent'
  if (env.XDG_CONFIG_HOME) return join(resolve(env.XDG_CONFIG_HOME), 'agent')
  return join(homedir(), '.agent')
}

function canWriteOrCreate(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK)
    return true
  } catch {
    try {
      accessSync(join(dir, '..'), constants.W_OK)
      return true
    } catch {
      return false
    }
  }
}
