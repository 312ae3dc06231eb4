/** What every launcher needs from the image floor: buildah, and a usable image store. */
import {errorMessage} from '../errors.js'
import {checkBinary} from '../launchers/host-checks.js'
import type {HostCheck} from '../launchers/launcher.js'
import type {LauncherName} from '../state/vm-record.js'
import {lastLines, tryRun} from '../system/index.js'
import {imageStore} from './storage.js'

const BUILDAH_FIX = 'install buildah: `apt-get install buildah` (macOS: `brew install slp/krun/buildah`)'

export async function imageChecks(stateRoot: string, env: NodeJS.ProcessEnv, neededBy: LauncherName[]): Promise<HostCheck[]> {
  const bin = await checkBinary({id: 'buildah', cmd: 'buildah', envVar: 'AGENT_BUILDAH', neededBy, fix: BUILDAH_FIX}, env)
  const base = {id: 'image-storage', title: 'image storage', neededBy}
  if (!bin.ok) return [bin, {...base, ok: false, detail: 'buildah is not installed, so image storage cannot be checked', fix: BUILDAH_FIX}]
  let storeEnv: Record<string, string>
  try {
    const store = imageStore(stateRoot, env)
    if (store.problem) return [bin, {...base, ok: false, detail: store.problem.reason, fix: store.problem.fix}]
    storeEnv = store.env
  } catch (err) {
    return [bin, {...base, ok: false, detail: `cannot prepare agent's image storage config: ${errorMessage(err)}`, fix: 'check that the state dir is writable'}]
  }
  const res = await tryRun(env.AGENT_BUILDAH ?? 'buildah', ['info'], {env: {...env, ...storeEnv}, extendEnv: false, timeoutMs: 30_000})
  if (res.exitCode !== 0) {
    return [bin, {...base, ok: false, detail: `buildah info failed: ${lastLines(res.all, 1)}`, fix: 'fix the containers-storage config (CONTAINERS_STORAGE_CONF) or run agent as root'}]
  }
  let detail = 'buildah storage is usable'
  try {
    const info = JSON.parse(res.stdout) as {store?: {GraphRoot?: string; GraphDriverName?: string}}
    if (info.store?.GraphRoot) detail = `${info.store.GraphDriverName ?? 'storage'} at ${info.store.GraphRoot}`
  } catch {
    // older buildah: plain text
  }
  if (storeEnv.CONTAINERS_STORAGE_CONF) detail += ` (agent's own: ${storeEnv.CONTAINERS_STORAGE_CONF})`
  return [bin, {...base, ok: true, detail}]
}
