import type {Config} from '@oclif/core'
import {existsSync} from 'node:fs'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import type {StatePaths} from '../config/state-dir.js'
import {Buildah} from '../images/buildah.js'
import {imageStore} from '../images/storage.js'
import type {LaunchContext} from '../launchers/launcher.js'
import {loadRuntimes, type RuntimeRegistry} from '../runtimes/registry.js'
import type {VmRepository} from '../state/vm-repository.js'
import type {VmRecord} from '../state/vm-record.js'
import {unavailable} from '../errors.js'

/**
 * What every service needs from the outside world; each front end (a command, later a server)
 * builds one, tests can build their own.
 */
export interface ServiceContext {
  paths: StatePaths
  /** The VM database, opened on first use: image and doctor commands never load sqlite3. */
  db(): Promise<VmRepository>
  config: Config
  buildah: Buildah
  runtimes(): Promise<RuntimeRegistry>
  /** Aborted on Ctrl-C. */
  signal?: AbortSignal
  /** Progress lines for humans (stderr). */
  info(msg: string): void
}

/** `runtimes` replaces oclif's hook run (the fast path's core plugins, runtimes/core-runtimes.ts). */
export function makeContext(o: {paths: StatePaths; db(): Promise<VmRepository>; config: Config; signal?: AbortSignal; info(msg: string): void; runtimes?: () => Promise<RuntimeRegistry>}): ServiceContext {
  let registry: Promise<RuntimeRegistry> | undefined
  const load = o.runtimes ?? (() => loadRuntimes(o.config))
  return {
    paths: o.paths,
    db: o.db,
    config: o.config,
    signal: o.signal,
    info: o.info,
    buildah: new Buildah(imageStore(o.paths.root)),
    runtimes: () => (registry ??= load()),
  }
}

/** The built guest dir (holds the static agent-init), bind-mounted read-only at /.agent in every VM. */
export function guestDir(): string {
  const dir = process.env.AGENT_GUEST_DIR
    ? resolve(process.env.AGENT_GUEST_DIR)
    : join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'guest', 'bin')
  if (!existsSync(join(dir, 'agent-init'))) {
    throw unavailable(`the guest init is not built (looked for ${join(dir, 'agent-init')})`, 'run `npm run build` in the agent checkout, or set AGENT_GUEST_DIR')
  }
  return dir
}

/** The host side of a VM for its launcher; the persist dir follows from the VM itself. */
export function launchContext(ctx: ServiceContext, vm: Pick<VmRecord, 'id' | 'persist'>, env: Readonly<Record<string, string>>, step?: (s: string) => void): LaunchContext {
  // Looked up when a launcher reads it: only the OCI launchers bind-mount agent-init, so a krunvm
  // host (macOS, where the static Linux build cannot be made) never needs it.
  return {
    paths: ctx.paths,
    get guestDir() {
      return guestDir()
    },
    env,
    persistDir: vm.persist ? ctx.paths.persistDir(vm.id) : undefined,
    step,
  }
}
