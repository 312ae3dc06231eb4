/**
 * What a runsc release can and cannot do, from its version string. Pure: no I/O, unit-tested.
 *
 * Two releases are measured on this project's machines (Debian 12, kernel 6.x, no KVM):
 *  - 0.0~20221219.0 (Debian 12 "bookworm"): coreutils' statx calls fail with EINVAL, so `ls` and
 *    `stat` print "Invalid argument"; platforms ptrace and kvm only; --network=sandbox refuses
 *    to start on kernels >= 6.x.
 *  - 0.0~20240729.0 (bookworm-backports, what scripts/setup.sh installs): ls, stat, find and du
 *    work; platforms systrap (its default), ptrace and kvm; --network=sandbox still refuses.
 *    Left: lgetxattr on a symlink fails with EBADF (gvisor#11049, fixed upstream in October
 *    2024). Debian 12's coreutils 9.1 asks it for every symlink, so `ls -l` in a bookworm image
 *    prints "Bad file descriptor" per symlink on stderr (listing and exit status right);
 *    Debian 13's coreutils 9.7 asks llistxattr first and stays quiet.
 *
 * Decision for the older release: agent keeps working with it and says what is missing (doctor,
 * and a warning at `vm create`), rather than refusing: everything but coreutils' ls/stat works,
 * and a user on plain Debian 12 keeps the VMs they have. What cannot work there is refused with a
 * message naming the fix (--gvisor-platform systrap). Releases older than 20221219 (never tried)
 * are refused. A seccomp answer (statx -> ENOSYS, so glibc falls back to fstatat) was tried:
 * runsc applies the spec's filter to the container's init only, not to `runsc exec` processes,
 * so it would need agent-init to install it; not done.
 */

export type GvisorPlatform = 'ptrace' | 'systrap'
export const GVISOR_PLATFORMS: readonly GvisorPlatform[] = ['ptrace', 'systrap']
/**
 * The platform new VMs get unless --gvisor-platform / AGENT_GVISOR_PLATFORM says otherwise; a
 * release without it (20221219) gets ptrace. Why systrap (bench/REPORT.md, docs/security.md):
 * boot, exec and a CPU-bound loop measure the same on both, fork+exec is ~1.5x dearer on systrap
 * (~4 ms a call), and on systrap an out-of-memory kill takes only the culprit, not the sandbox.
 */
export const DEFAULT_GVISOR_PLATFORM: GvisorPlatform = 'systrap'

/** `vm create --gvisor-platform`: gVisor's own create option (AGENT_GVISOR_PLATFORM is its default). */
export const GVISOR_PLATFORM_OPTION = {
  launcher: 'gvisor',
  flag: 'gvisor-platform',
  values: GVISOR_PLATFORMS,
  summary: `the platform that runs guest code: ${GVISOR_PLATFORMS.join(' or ')} (default ${DEFAULT_GVISOR_PLATFORM}, ptrace where runsc lacks it; AGENT_GVISOR_PLATFORM sets it too; see bench/REPORT.md). Kept for the VM's life: vm start boots it the same way.`,
} as const

/** The platform a new VM gets: the one asked for, else the default where this release has it, else ptrace. */
export function choosePlatform(facts: GvisorFacts | undefined, asked: GvisorPlatform | undefined): GvisorPlatform {
  if (asked) return asked
  return !facts || facts.platforms.includes(DEFAULT_GVISOR_PLATFORM) ? DEFAULT_GVISOR_PLATFORM : 'ptrace'
}

/** The oldest release agent accepts, and the newest known to need each workaround. */
export const OLDEST_SUPPORTED = 20221219
/** First release with the systrap platform (estimated: announced April 2023; 20221219 lacks it, 20240729 has it). */
const FIRST_SYSTRAP = 20230417
/** Releases before this one reject coreutils' statx (estimated; measured: 20221219 bad, 20240729 good). */
const STATX_FIXED = 20230101
/** gvisor#11049 (lgetxattr on a symlink: EBADF) was fixed by gvisor#11052, October 2024. */
const LGETXATTR_FIXED = 20241021

export interface RunscVersion {
  /** What the binary printed, first line, e.g. "runsc version 0.0~20240729.0". */
  raw: string
  /** Release date as a number, e.g. 20240729. */
  date: number
  /** e.g. "release-20240729.0" */
  label: string
}

export interface GvisorFacts {
  version: RunscVersion | undefined
  /** Refused: too old or unparsable; the reason says why. */
  supported: boolean
  reason?: string
  /** coreutils' ls/stat/find/du work without a workaround. */
  statxWorks: boolean
  /** lgetxattr on a symlink fails with EBADF (ls -l noise) without a workaround. */
  lgetxattrSymlinkBug: boolean
  /** Platforms usable without KVM, in the release's own order. */
  platforms: GvisorPlatform[]
  /** --network=sandbox (gVisor's own netstack) starts on this host's kernel. */
  networkSandbox: boolean
}

/** Accepts "runsc version release-20240729.0", "runsc version 0.0~20240729.0", or a bare "20240729.0". */
export function parseRunscVersion(text: string): RunscVersion | undefined {
  const raw = text.split('\n')[0]!.trim()
  const m = /(?:release-|~|\b)(20\d{6})(?:\.(\d+))?/.exec(raw)
  if (!m) return undefined
  const date = Number(m[1])
  return {raw, date, label: `release-${m[1]}.${m[2] ?? '0'}`}
}

export function runscFacts(versionText: string): GvisorFacts {
  const version = parseRunscVersion(versionText)
  if (!version) {
    return {
      version,
      supported: false,
      reason: `cannot read a release date from runsc --version: ${JSON.stringify(versionText.split('\n')[0] ?? '')}`,
      statxWorks: false,
      lgetxattrSymlinkBug: false,
      platforms: [],
      networkSandbox: false,
    }
  }
  const d = version.date
  const statxWorks = d >= STATX_FIXED
  const lgetxattrSymlinkBug = d < LGETXATTR_FIXED
  const facts: GvisorFacts = {
    version,
    supported: d >= OLDEST_SUPPORTED,
    statxWorks,
    lgetxattrSymlinkBug,
    platforms: d >= FIRST_SYSTRAP ? ['systrap', 'ptrace'] : ['ptrace'],
    // Measured with 20221219 and 20240729 alike: "cannot run with network enabled in root network namespace".
    networkSandbox: false,
  }
  if (!facts.supported) facts.reason = `runsc ${version.label} is older than release-${OLDEST_SUPPORTED}.0, the oldest agent has been tested with`
  return facts
}

/** Why `platform` cannot be used with this release, or undefined when it can. */
export function platformProblem(facts: GvisorFacts, platform: GvisorPlatform): string | undefined {
  if (facts.platforms.includes(platform)) return undefined
  return `runsc ${facts.version?.label ?? '(unknown version)'} has no ${platform} platform (it has: ${facts.platforms.join(', ') || 'none'}); install runsc from bookworm-backports (scripts/setup.sh) or use --gvisor-platform ptrace`
}

/** A warning for `vm create` when this release lacks something users expect, or undefined. */
export function gvisorWarning(facts: GvisorFacts): string | undefined {
  if (!facts.version || facts.statxWorks) return undefined
  return `runsc ${facts.version.label}: coreutils' ls and stat fail with "Invalid argument" inside gVisor VMs (python/node file APIs work); install runsc 0.0~20240729.0 from bookworm-backports: bash scripts/setup.sh`
}

/**
 * Lines for `agent doctor`: what this runsc allows, e.g.
 * "runsc release-20240729.0: ls/stat/find/du work; platforms systrap, ptrace (agent uses ptrace)".
 */
export function gvisorFacts(versionText: string, defaultPlatform?: GvisorPlatform): string[] {
  const f = runscFacts(versionText)
  if (!f.version) return [`runsc: ${f.reason}`]
  const name = `runsc ${f.version.label}`
  if (!f.supported) return [`${name}: not supported: ${f.reason}; install runsc 0.0~20240729.0 from bookworm-backports (scripts/setup.sh)`]
  const fs = f.statxWorks ? 'ls/stat/find/du work' : 'ls/stat FAIL inside VMs (statx: EINVAL); install runsc 0.0~20240729.0 from bookworm-backports (scripts/setup.sh)'
  const uses = defaultPlatform ? ` (agent uses ${f.platforms.includes(defaultPlatform) ? defaultPlatform : 'ptrace'})` : ''
  const lines = [`${name}: ${fs}; platforms ${f.platforms.join(', ')}${uses}`]
  if (f.lgetxattrSymlinkBug && f.statxWorks) lines.push(`${name}: in Debian 12 images ls -l prints "Bad file descriptor" per symlink (gvisor#11049; listing and exit status are right)`)
  if (!f.networkSandbox) lines.push(`${name}: --network=sandbox refuses this kernel; allow_all uses --network=host inside the VM's own slirp4netns namespace`)
  return lines
}

/** gvisorFacts() as one line for doctor's detail column (the release named once). */
export function gvisorFactsLine(versionText: string, defaultPlatform?: GvisorPlatform): string {
  const lines = gvisorFacts(versionText, defaultPlatform)
  const name = /^runsc [^:]*: /.exec(lines[0] ?? '')?.[0]
  return lines.map((l, i) => (i > 0 && name && l.startsWith(name) ? l.slice(name.length) : l)).join('; ')
}
