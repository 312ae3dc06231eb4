/**
 * One command at a time per VM. krunvm itself would refuse a second `start` on
 * `<rootfs>/.krunvm.lock`, but only after booting; agent refuses it first, with `<vm>/krunvm.lock`.
 *
 * The lock file is written whole and then hard-linked into place, so it appears atomically or not
 * at all. It holds the agent pid, a token and (once started) the krunvm pid. A lock whose agent
 * process and krunvm process are both dead is stale and taken over. A live one is refused at once
 * (no waiting): the caller gets a conflict error.
 */
import {randomBytes} from 'node:crypto'
import {linkSync, mkdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {conflict} from '../../errors.js'
import {logger} from '../../logging/logger.js'
import {alive, killProcess} from '../../system/index.js'
import {writeFileAtomic} from '../../util/files.js'

export interface LockInfo {
  pid: number
  token: string
  krunvmPid?: number
  /** krunvm leads its own process group (killed as a group). */
  group?: boolean
  startedAt: string
}

/** The lock file in a VM's host dir. */
export function lockFile(vmDir: string): string {
  return join(vmDir, 'krunvm.lock')
}

export function readLock(vmDir: string): LockInfo | undefined {
  try {
    return JSON.parse(readFileSync(lockFile(vmDir), 'utf8')) as LockInfo
  } catch {
    return undefined
  }
}

/** Takes the VM's lock for this process, or throws `conflict` when a live command holds it. */
export function acquireLock(vmDir: string, id: string): LockInfo {
  mkdirSync(vmDir, {recursive: true, mode: 0o700})
  const f = lockFile(vmDir)
  const info: LockInfo = {pid: process.pid, token: randomBytes(6).toString('hex'), startedAt: new Date().toISOString()}
  const tmp = `${f}.${process.pid}.${info.token}.tmp`
  writeFileSync(tmp, JSON.stringify(info), {mode: 0o600})
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        linkSync(tmp, f)
        return info
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      }
      const held = readLock(vmDir)
      if (held && (alive(held.pid) || alive(held.krunvmPid))) {
        throw conflict(
          `VM ${id} is busy running another command (agent pid ${held.pid}${held.krunvmPid ? `, krunvm pid ${held.krunvmPid}` : ''})`,
          `wait for it to finish, or stop it with \`agent vm stop ${id}\``,
        )
      }
      logger().debug(`${id}: taking over a stale krunvm lock (${held ? `pid ${held.pid}` : 'unreadable'})`)
      rmSync(f, {force: true})
    }
    throw conflict(`VM ${id} is busy running another command`)
  } finally {
    rmSync(tmp, {force: true})
  }
}

/** Records the krunvm process of a held lock, so that `stop` (another agent process) can kill it. */
export function recordKrunvm(vmDir: string, lock: LockInfo, krunvmPid: number, group: boolean): void {
  writeFileAtomic(lockFile(vmDir), JSON.stringify({...lock, krunvmPid, group} satisfies LockInfo))
}

/** Gives the lock back, if it is still ours (a stale-lock takeover may have replaced it). */
export function releaseLock(vmDir: string, token: string): void {
  if (readLock(vmDir)?.token === token) rmSync(lockFile(vmDir), {force: true})
}

/**
 * Kills the krunvm process recorded in the VM's lock (SIGTERM, then SIGKILL after `graceMs`),
 * and clears the lock once its agent process is gone too.
 */
export async function killInFlight(vmDir: string, graceMs: number): Promise<void> {
  const info = readLock(vmDir)
  if (!info) return
  if (info.krunvmPid && alive(info.krunvmPid)) await killProcess(info.krunvmPid, {group: info.group, graceMs})
  if (!alive(info.pid)) rmSync(lockFile(vmDir), {force: true})
}
