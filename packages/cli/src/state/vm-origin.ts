import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'

/**
 * Who made a VM, for `vm list`: `agent serve` keeps an E2B sandbox's origin (`api`, or `pool`
 * for a warm pool VM not yet claimed) in `vms/<id>/e2b.json`; MCP sandboxes have `mcp.json`;
 * everything else is `cli`. One small file read per VM, only when the file exists.
 */
export type VmOrigin = 'cli' | 'api' | 'pool' | 'mcp'

export function vmOrigin(vmDir: string): VmOrigin {
  const e2b = join(vmDir, 'e2b.json')
  if (existsSync(e2b)) {
    try {
      const o = (JSON.parse(readFileSync(e2b, 'utf8')) as {origin?: unknown}).origin
      if (o === 'api' || o === 'pool' || o === 'cli') return o
    } catch {
      // unreadable: fall through
    }
  }
  if (existsSync(join(vmDir, 'mcp.json'))) return 'mcp'
  return 'cli'
}
