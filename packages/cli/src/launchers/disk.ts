/**
 * The VM's bounded disk and root filesystem, all derived from the VM dir:
 *
 *   <vmDir>/disk.img   sparse ext4 image of --disk MiB: the only place guest writes land
 *   <vmDir>/disk/      its loop mount: upper/ work/ (overlay), out/ (/out), tmp/ (/tmp)
 *   <vmDir>/rootfs/    overlay: lower = buildah's mount of the image, upper on the disk
 *   <vmDir>/out        symlink -> disk/out, so paths.outDir(id) reads results back as long
 *                      as the disk is mounted (stop keeps it mounted; start re-mounts it)
 *
 * A full disk gives ENOSPC inside the guest and the image file can never outgrow its size.
 *
 * /persist is bounded the same way, but its image lives in the kept persist dir so that it
 * outlives the VM (`clean --keep-persist`, `create --persist-from`):
 *
 *   <state>/persist/<id>/persist.img   sparse ext4 image of --persist-size MiB
 *   <vmDir>/persist/                   its loop mount while the VM exists, bound at /persist
 */
import {closeSync, existsSync, ftruncateSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, rmdirSync, rmSync, statSync, symlinkSync, chmodSync, unlinkSync} from 'node:fs'
import {join} from 'node:path'
import {AgentError, errorMessage} from '../errors.js'
import {logger} from '../logging/logger.js'
import {run, tryRun} from '../system/index.js'

export interface DiskLayout {
  image: string
  mount: string
  upper: string
  work: string
  out: string
  tmp: string
  rootfs: string
  outLink: string
}

export function diskLayout(vmDir: string): DiskLayout {
  const mount = join(vmDir, 'disk')
  return {
    image: join(vmDir, 'disk.img'),
    mount,
    upper: join(mount, 'upper'),
    work: join(mount, 'work'),
    out: join(mount, 'out'),
    tmp: join(mount, 'tmp'),
    rootfs: join(vmDir, 'rootfs'),
    outLink: join(vmDir, 'out'),
  }
}

/** Runs a host tool (argv only) and throws with its output on failure. */
export async function sh(bin: string, args: readonly string[], what: string, timeoutMs = 60_000): Promise<string> {
  return run(bin, args, {what, timeoutMs})
}

/** Mount points from /proc/self/mountinfo (octal escapes decoded). */
export function mountPoints(): string[] {
  const text = readFileSync('/proc/self/mountinfo', 'utf8')
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ')[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
}

export function isMounted(path: string): boolean {
  return mountPoints().includes(path)
}

/** Creates (first time) and mounts the ext4 disk; idempotent. */
export async function ensureDisk(vmDir: string, diskMib: number): Promise<DiskLayout> {
  const d = diskLayout(vmDir)
  mkdirSync(d.mount, {recursive: true, mode: 0o700})
  if (!existsSync(d.image)) await makeExt4(d.image, diskMib, 'disk image')
  if (!isMounted(d.mount)) await sh('mount', ['-o', 'loop', d.image, d.mount], 'mounting disk image')
  for (const dir of [d.upper, d.work, d.out]) mkdirSync(dir, {recursive: true, mode: 0o755})
  if (!existsSync(d.tmp)) mkdirSync(d.tmp, {mode: 0o1777})
  chmodSync(d.tmp, 0o1777)
  ensureOutLink(d)
  return d
}

function ensureOutLink(d: DiskLayout): void {
  let st
  try {
    st = lstatSync(d.outLink)
  } catch {
    symlinkSync('disk/out', d.outLink)
    return
  }
  if (st.isSymbolicLink() && readlinkSync(d.outLink) === 'disk/out') return
  if (st.isDirectory() && readdirSync(d.outLink).length === 0) rmdirSync(d.outLink)
  else if (st.isSymbolicLink()) unlinkSync(d.outLink)
  else throw new AgentError('conflict', `${d.outLink} exists and is not the /out link; move it away`)
  symlinkSync('disk/out', d.outLink)
}

/** Mounts the overlay root filesystem over the image's (read-only for us) buildah mount. */
export async function ensureRootfs(d: DiskLayout, lower: string): Promise<void> {
  mkdirSync(d.rootfs, {recursive: true, mode: 0o755})
  if (isMounted(d.rootfs)) return
  await sh('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${d.upper},workdir=${d.work}`, d.rootfs], 'mounting root filesystem')
}

/** Unmounts the overlay and the disk and frees the loop device; tolerates anything missing. */
export async function releaseDisk(vmDir: string): Promise<void> {
  const d = diskLayout(vmDir)
  const points = [d.rootfs, d.mount, persistMount(vmDir)]
  // One umount for all, in this order (the overlay before the disk it writes to); whatever is
  // still mounted after it is retried one by one, lazily at last.
  const mounted = points.filter(isMounted)
  if (mounted.length) await tryRun('umount', mounted)
  for (const mp of points) {
    for (let i = 0; i < 5 && isMounted(mp); i++) {
      const res = await tryRun('umount', [mp])
      if (res.exitCode !== 0 && isMounted(mp)) {
        logger().debug(`umount ${mp}: ${res.all.trim()}; retrying lazily`)
        await tryRun('umount', ['-l', mp])
      }
    }
  }
  // `mount -o loop` sets autoclear, but a killed agent can leave a device bound to the image.
  await detachLoops(d.image)
}

/**
 * Loop devices bound to `image`, as `losetup -j` finds them: each device's backing file (sysfs)
 * compared by device and inode with the image. Read from /sys, no program started.
 */
export function loopsOf(image: string, sysBlock = '/sys/block'): string[] {
  let want
  try {
    want = statSync(image)
  } catch {
    return []
  }
  const found: string[] = []
  let names: string[]
  try {
    names = readdirSync(sysBlock).filter((n) => /^loop\d+$/.test(n))
  } catch {
    return []
  }
  for (const n of names) {
    try {
      const backing = readFileSync(join(sysBlock, n, 'loop', 'backing_file'), 'utf8').replace(/\n$/, '')
      const st = statSync(backing)
      if (st.dev === want.dev && st.ino === want.ino) found.push(`/dev/${n}`)
    } catch {
      // not bound, or its backing file is gone: not ours
    }
  }
  return found
}

/** Frees every loop device still bound to `image`; tolerates devices that go meanwhile. */
async function detachLoops(image: string): Promise<void> {
  for (const dev of loopsOf(image)) await tryRun('losetup', ['-d', dev])
}

export const PERSIST_IMAGE = 'persist.img'
export const DEFAULT_PERSIST_MIB = 1024
export const persistMount = (vmDir: string) => join(vmDir, 'persist')

/**
 * Makes (first time) and mounts the VM's /persist file system; returns the host dir to bind at
 * /persist. `mib` null: a VM made before /persist was bounded keeps its plain dir. A kept plain dir
 * attached to a new VM (--persist-from) is moved into a new image first.
 */
export async function ensurePersist(vmDir: string, persistDir: string, mib: number | null): Promise<string> {
  mkdirSync(persistDir, {recursive: true, mode: 0o700})
  if (mib === null) return persistDir
  const image = join(persistDir, PERSIST_IMAGE)
  const mount = persistMount(vmDir)
  mkdirSync(mount, {recursive: true, mode: 0o700})
  const legacy = readdirSync(persistDir).filter((n) => n !== PERSIST_IMAGE && !n.startsWith(`${PERSIST_IMAGE}.`))
  if (!existsSync(image)) await makeExt4(image, mib, 'persist image')
  if (!isMounted(mount)) await sh('mount', ['-o', 'loop,nosuid,nodev', image, mount], 'mounting the persist image')
  chmodSync(mount, 0o755)
  if (legacy.length) {
    // Files of an unbounded /persist kept before: into the image (ENOSPC here if they do not fit), then away.
    for (const n of legacy) await sh('cp', ['-a', '--', join(persistDir, n), `${mount}/`], 'moving the kept /persist files into its new file system', 600_000)
    for (const n of legacy) rmSync(join(persistDir, n), {recursive: true, force: true})
  }
  return mount
}

/** Frees any loop device still bound to a kept persist image (a killed agent); its mount went with releaseDisk. */
export async function releasePersist(persistDir: string): Promise<void> {
  await detachLoops(join(persistDir, PERSIST_IMAGE))
}

/** A sparse ext4 image of `mib` MiB, made under a temporary name and renamed, so a half-made one is never used. */
async function makeExt4(image: string, mib: number, what: string): Promise<void> {
  const tmp = `${image}.new`
  // What `truncate -s` does: a sparse file of that size (no blocks written).
  try {
    const fd = openSync(tmp, 'w', 0o644)
    try {
      ftruncateSync(fd, Math.max(16, Math.floor(mib)) * 1024 * 1024)
    } finally {
      closeSync(fd)
    }
  } catch (err) {
    throw new AgentError('internal', `creating ${what} failed: ${errorMessage(err)}`)
  }
  // -m 0: guest root would use reserved blocks anyway; nodiscard keeps it fast and sparse.
  await sh('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'nodiscard', tmp], `formatting ${what}`)
  renameSync(tmp, image)
}

/** Any mount at or below dir: removal must never recurse into a mounted file system. */
export function mountsUnder(dir: string): string[] {
  return mountPoints().filter((m) => m === dir || m.startsWith(`${dir}/`))
}

export function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path)
  } catch {
    // already gone
  }
}
