import {mkdirSync, statSync, writeFileSync, unlinkSync, chmodSync} from 'node:fs'
import {join, resolve} from 'node:path'
import {unavailable, errorMessage} from '../errors.js'

export {resolveStateDir} from '../fast/state-root.js'

/** The layout of a state dir. Every path agent touches is derived here. */
export class StatePaths {
  constructor(readonly root: string) {}
  get db() { return join(this.root, 'agent.db') }
  get vms() { return join(this.root, 'vms') }
  get persistRoot() { return join(this.root, 'persist') }
  get logs() { return join(this.root, 'logs') }
  /** Runtime state (`runsc --root`, `runc --root`). */
  runtimeRoot(launcher: string) { return join(this.root, 'run', launcher) }
  /** containers-storage, policy and registries files for buildah. */
  get containers() { return join(this.root, 'containers') }
  /** XDG_CONFIG_HOME handed to krunvm, so its TOML lives here. */
  get krunvmConfigHome() { return join(this.root, 'krunvm') }
  vmDir(id: string) { return join(this.vms, id) }
  inDir(id: string) { return join(this.vmDir(id), 'in') }
  outDir(id: string) { return join(this.vmDir(id), 'out') }
  bundleDir(id: string) { return join(this.vmDir(id), 'bundle') }
  persistDir(id: string) { return join(this.persistRoot, id) }
}

const SUBDIRS = ['vms', 'persist', 'logs'] as const

/**
 * mkdir -p, one component at a time. Node 20's recursive mkdirSync spins forever on paths
 * such as /proc/x, where mkdir keeps failing with ENOENT.
 */
export function mkdirp(dir: string, mode = 0o700): void {
  // Start-up runs this on every command: one stat when the dir is there, not an EEXIST per component.
  if (statSync(dir, {throwIfNoEntry: false})?.isDirectory()) return
  const parts = resolve(dir).split('/').filter(Boolean)
  let cur = ''
  for (const part of parts) {
    cur += `/${part}`
    try {
      mkdirSync(cur, {mode})
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
  }
}

/**
 * Creates the state dir (mode 0700) and its layout, and proves it is writable.
 * Throws an `unavailable` error that names the path and says what to do.
 */
export function ensureStateDir(root: string): StatePaths {
  const fix = 'set AGENT_STATE_DIR to a writable directory (for example AGENT_STATE_DIR=$HOME/.agent)'
  if (root.includes('\0') || root.includes('\n')) throw unavailable(`state dir ${JSON.stringify(root)} is not a valid path`, fix)
  try {
    mkdirp(root)
    if (!statSync(root).isDirectory()) throw new Error('not a directory')
    for (const sub of SUBDIRS) mkdirp(join(root, sub))
    // root passes access(2) checks even on read-only mounts, so prove it with a write.
    const probe = join(root, `.probe-${process.pid}`)
    writeFileSync(probe, '')
    unlinkSync(probe)
    chmodSync(root, 0o700)
  } catch (err) {
    throw unavailable(`state dir ${root} is not usable: ${errorMessage(err)}`, fix, err)
  }
  return new StatePaths(root)
}
