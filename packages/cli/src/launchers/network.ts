/**
 * Guest networking.
 *
 *  - none: the runtime makes a fresh network namespace (loopback only); runsc gets --network=none.
 *  - allow_all / allow:LIST: a namespace persisted at <vmDir>/netns (`unshare --net=<file>`: a bind mount of
 *    the nsfs inode, derivable from the VM id) with slirp4netns giving it tap0 + user-mode NAT.
 *    --disable-host-loopback stops the guest reaching services on the host's 127.0.0.1, and the
 *    guest never shares the host namespace. The egress policy (public internet only, or an allow
 *    list) is an nftables table in that namespace: see egress.ts and egress-policy.ts.
 *
 * `ip netns add` is not used: on this host it left /run/netns/<name> as a plain file (setns:
 * EINVAL), and a file under the VM dir keeps every resource derivable from the VM dir anyway.
 */
import {existsSync, openSync, closeSync, writeFileSync, lstatSync, unlinkSync} from 'node:fs'
import {join} from 'node:path'
import {AgentError, unavailable} from '../errors.js'
import {logger} from '../logging/logger.js'
import {didNotStart, killProcess, lastLinesOfFile, pidFromFile, pidIs, pidsWhere, start, tryRun} from '../system/index.js'
import {isMounted, sh, unlinkQuiet} from './disk.js'

export function netnsPath(vmDir: string): string {
  return join(vmDir, 'netns')
}

function slirpPidFile(vmDir: string): string {
  return join(vmDir, 'slirp.pid')
}

/** Makes (idempotently) the persisted namespace and returns its path. */
export async function ensureNetns(vmDir: string): Promise<string> {
  const path = netnsPath(vmDir)
  if (isMounted(path)) return path
  if (!existsSync(path)) closeSync(openSync(path, 'w', 0o600))
  await sh('unshare', [`--net=${path}`, 'true'], 'creating network namespace')
  return path
}

/** A recycled pid must not get killed: it has to be slirp4netns on our namespace path. */
const isSlirpOf = (vmDir: string) => (cmd: readonly string[]) => Boolean(cmd[0]?.endsWith('slirp4netns')) && cmd.includes(netnsPath(vmDir))

/** The pid in slirp.pid when it is still our slirp4netns for this namespace. */
export function slirpPid(vmDir: string): number | undefined {
  return pidFromFile(slirpPidFile(vmDir), isSlirpOf(vmDir))
}

/** Starts slirp4netns for the namespace unless it already runs; waits until tap0 is configured. */
export async function ensureSlirp(vmDir: string, bin = 'slirp4netns'): Promise<number> {
  const running = slirpPid(vmDir)
  if (running) return running
  const ns = netnsPath(vmDir)
  // Real fds (not execa's {file}, which is a pipe execa drains and would wait on).
  const log = openSync(join(vmDir, 'slirp.log'), 'w', 0o600)
  let proc
  try {
    // Detached and not cleaned up: it must outlive this agent process (the VM is long-lived).
    proc = start(bin, ['--configure', '--mtu=65520', '--disable-host-loopback', '--enable-sandbox', '--enable-seccomp', '--ready-fd=3', '--netns-type=path', ns, 'tap0'], {
      stdin: 'ignore',
      stdoutFd: log,
      stderrFd: log,
      extraPipes: 1,
      detached: true,
    })
  } finally {
    closeSync(log)
  }
  // Recorded at once, not when it is ready: an agent killed while it comes up must not leave it
  // behind unrecorded (stopSlirp also looks for one without a pid file).
  if (proc.pid) writeFileSync(slirpPidFile(vmDir), `${proc.pid}\n`)
  const settled = proc.then((r) => r)
  const ready = proc.stdio[3] as NodeJS.ReadableStream | undefined
  const ok = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 10_000)
    ready?.once('data', () => {
      clearTimeout(timer)
      resolve(true)
    })
    proc.once('exit', () => {
      clearTimeout(timer)
      resolve(false)
    })
    proc.once('error', () => {
      clearTimeout(timer)
      resolve(false)
    })
  })
  ;(ready as unknown as {destroy?: () => void})?.destroy?.()
  if (!ok || !proc.pid) {
    if (proc.pid) process.kill(proc.pid, 'SIGKILL')
    unlinkQuiet(slirpPidFile(vmDir))
    const tail = lastLinesOfFile(join(vmDir, 'slirp.log'))
    if (!proc.pid || didNotStart(await settled)) {
      throw unavailable('slirp4netns is not installed', 'apt-get install slirp4netns')
    }
    throw new AgentError('internal', `slirp4netns did not come up: ${tail || 'no output'}`)
  }
  proc.unref()
  logger().debug(`slirp4netns pid ${proc.pid} for ${ns}`)
  return proc.pid
}

/** Stops this namespace's slirp4netns: the one in slirp.pid, and any without a pid file. */
export async function stopSlirp(vmDir: string): Promise<void> {
  const isOurs = isSlirpOf(vmDir)
  const pid = slirpPid(vmDir)
  if (pid) await killProcess(pid, {graceMs: 1_000, isAlive: () => slirpPid(vmDir) !== undefined})
  // Only a VM with a namespace can have one (releaseNetns comes after this): no /proc walk otherwise.
  const strays = existsSync(netnsPath(vmDir)) ? pidsWhere(isOurs) : []
  for (const stray of strays) await killProcess(stray, {graceMs: 1_000, isAlive: () => pidIs(stray, isOurs)})
  unlinkQuiet(slirpPidFile(vmDir))
}

/** Unmounts and deletes the namespace file; the namespace dies with its last user. */
export async function releaseNetns(vmDir: string): Promise<void> {
  const path = netnsPath(vmDir)
  for (let i = 0; i < 3 && isMounted(path); i++) {
    await tryRun('umount', [path])
    if (isMounted(path)) await tryRun('umount', ['-l', path])
  }
  try {
    if (lstatSync(path)) unlinkSync(path)
  } catch {
    // already gone
  }
}

/** DNS and hosts for the guest, written into the overlay (upper layer) before boot. */
/** `dns`: the resolver to name, null for none at all, 'keep' to leave the image's (no network). */
export function writeGuestNetworkFiles(rootfs: string, id: string, dns: string | null | 'keep'): void {
  const etc = join(rootfs, 'etc')
  if (!existsSync(etc)) return
  const put = (name: string, text: string) => {
    const p = join(etc, name)
    try {
      // Images often ship these as symlinks (systemd-resolved); never write through one.
      if (lstatSync(p).isSymbolicLink()) unlinkSync(p)
    } catch {
      // absent
    }
    writeFileSync(p, text)
  }
  put('hosts', `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${id}\n`)
  put('hostname', `${id}\n`)
  // slirp's DNS (allow_all), the filtering DNS in the VM's namespace (allow lists with domains), or
  // none at all: a name then fails at once instead of asking a server the VM may not reach.
  if (dns !== 'keep') put('resolv.conf', dns ? `nameserver ${dns}\n` : '# no DNS: this VM\'s network policy names no domains\n')
}
