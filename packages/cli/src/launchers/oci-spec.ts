/**
 * Builds the OCI runtime spec (bundle config.json) for a VM. Pure: no I/O, so it is unit-tested
 * directly and both runc and runsc get exactly the same sandbox description.
 */

export type OciFlavour = 'runc' | 'runsc'

export interface OciSpecInput {
  flavour: OciFlavour
  /** VM id: also the hostname. */
  id: string
  /** The merged rootfs (our overlay). */
  rootfs: string
  /** Host dir holding agent-init, mounted read-only at /.agent. */
  guestDir: string
  /** Host dir mounted read-only at /in. */
  inDir: string
  /** Host dir (on the VM's bounded disk) mounted read-write at /out. */
  outDir: string
  /** Host dir on the bounded disk mounted at /tmp (runsc would otherwise put a tmpfs there). */
  tmpDir: string
  /** Host dir mounted read-write at /persist, when the VM has one. */
  persistDir?: string
  cpus: number
  /** Host cgroup memory limit (runsc: the guest's limit plus the sentry's own overhead). */
  memoryMib: number
  /** Host cgroup pids limit (runsc: host threads, not guest processes). */
  pids: number
  /** Path of a prepared network namespace (allow_all); a fresh empty one otherwise. */
  netnsPath?: string
  env?: Readonly<Record<string, string>>
  /** RLIMIT_NOFILE for the guest; must not exceed our own hard limit (no CAP_SYS_RESOURCE needed). */
  nofile?: number
  /**
   * Host dir (on the VM's bounded disk) mounted read-write at GUEST_CHANNEL_DIR, where agent-init
   * listens for exec requests (guest/README.md). Without it the VM has no exec channel.
   */
  channelDir?: string
}

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
export const INIT_PATH = '/.agent/agent-init'
/** Where agent-init serves the exec channel, inside the guest (guest-channel.ts is the host side). */
export const GUEST_CHANNEL_DIR = '/.agent-chan'
export const GUEST_CHANNEL_SOCKET = `${GUEST_CHANNEL_DIR}/init.sock`

/**
 * Docker's default set minus NET_RAW (raw sockets: spoofing), MKNOD (no devices needed) and
 * AUDIT_WRITE. Enough for package managers, chown'ing files and binding low ports.
 */
export const CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_SETFCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
] as const

/** Same lists as runc's and Docker's defaults. */
export const MASKED_PATHS = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
]
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']

/** char major:minor of the only host devices a guest gets (null, zero, full, random, urandom, tty, ptmx, pts). */
const ALLOWED_CHAR_DEVICES: Array<[number, number | undefined]> = [
  [1, 3],
  [1, 5],
  [1, 7],
  [1, 8],
  [1, 9],
  [5, 0],
  [5, 2],
  [136, undefined],
]

/**
 * Syscalls that have no business in a sandbox and widen the kernel attack surface (runc only: under
 * gVisor the sentry implements syscalls itself). A deny list rather than Docker's allow list keeps it
 * short; the capability set already blocks most of the dangerous ones.
 */
const DENIED_SYSCALLS = [
  'add_key',
  'bpf',
  'delete_module',
  'finit_module',
  'fsconfig',
  'fsmount',
  'fsopen',
  'fspick',
  'init_module',
  'kexec_file_load',
  'kexec_load',
  'keyctl',
  'mount',
  'move_mount',
  'open_by_handle_at',
  'open_tree',
  'perf_event_open',
  'pivot_root',
  'request_key',
  'setns',
  'swapoff',
  'swapon',
  'umount2',
  'unshare',
  'userfaultfd',
]
const CLONE_NEWUSER = 0x10000000

/** Cgroup path for a VM: derivable from the id alone, so cleanup needs nothing else. */
export function cgroupsPath(id: string): string {
  return `/agent/${id}`
}

export function buildOciSpec(input: OciSpecInput): Record<string, unknown> {
  const memBytes = Math.max(4, Math.floor(input.memoryMib)) * 1024 * 1024
  const env: Record<string, string> = {PATH: DEFAULT_PATH, HOME: '/root', HOSTNAME: input.id, ...input.env}
  const caps = [...CAPABILITIES]

  const bind = (source: string, destination: string, ro: boolean) => ({
    destination,
    type: 'bind',
    source,
    options: ['rbind', 'nosuid', 'nodev', ro ? 'ro' : 'rw'],
  })

  const mounts: Array<Record<string, unknown>> = [
    {destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev']},
    {destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k']},
    {destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620']},
    // /dev/shm is memory, so it is charged to (and bounded by) the memory limit.
    {destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k']},
    {destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro']},
  ]
  if (input.flavour === 'runc') {
    mounts.push(
      {destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev']},
      {destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro']},
    )
  }
  // /tmp is deliberately NOT a tmpfs: it lives on the VM's bounded disk.
  mounts.push(
    bind(input.tmpDir, '/tmp', false),
    bind(input.guestDir, '/.agent', true),
    bind(input.inDir, '/in', true),
    bind(input.outDir, '/out', false),
  )
  if (input.persistDir) mounts.push(bind(input.persistDir, '/persist', false))
  if (input.channelDir) mounts.push({...bind(input.channelDir, GUEST_CHANNEL_DIR, false), options: ['rbind', 'nosuid', 'nodev', 'noexec', 'rw']})

  const namespaces: Array<Record<string, string>> = [{type: 'pid'}, {type: 'ipc'}, {type: 'uts'}, {type: 'mount'}]
  namespaces.push(input.netnsPath ? {type: 'network', path: input.netnsPath} : {type: 'network'})
  if (input.flavour === 'runc') namespaces.push({type: 'cgroup'})

  const linux: Record<string, unknown> = {
    cgroupsPath: cgroupsPath(input.id),
    namespaces,
    resources: {
      devices: [
        {allow: false, access: 'rwm'},
        ...ALLOWED_CHAR_DEVICES.map(([major, minor]) => ({allow: true, type: 'c', major, ...(minor === undefined ? {} : {minor}), access: 'rwm'})),
      ],
      // swap == limit: memory+swap may not exceed memory, i.e. no swap at all.
      memory: {limit: memBytes, swap: memBytes},
      cpu: {quota: Math.max(1000, Math.round(input.cpus * 100_000)), period: 100_000},
      pids: {limit: Math.max(1, Math.floor(input.pids))},
    },
    maskedPaths: MASKED_PATHS,
    readonlyPaths: READONLY_PATHS,
  }
  if (input.flavour === 'runc') {
    linux.seccomp = {
      defaultAction: 'SCMP_ACT_ALLOW',
      architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'],
      syscalls: [
        {names: DENIED_SYSCALLS, action: 'SCMP_ACT_ERRNO', errnoRet: 1},
        // New user namespaces would hand the guest a full capability set inside them.
        {
          names: ['clone'],
          action: 'SCMP_ACT_ERRNO',
          errnoRet: 1,
          args: [{index: 0, value: CLONE_NEWUSER, valueTwo: CLONE_NEWUSER, op: 'SCMP_CMP_MASKED_EQ'}],
        },
        // clone3 passes flags in memory, which seccomp cannot inspect: ENOSYS makes libc fall back to clone.
        {names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38},
      ],
    }
  }

  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: {uid: 0, gid: 0},
      args: input.channelDir ? [INIT_PATH, 'init', '--channel', GUEST_CHANNEL_SOCKET] : [INIT_PATH, 'init'],
      env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      cwd: '/',
      capabilities: {bounding: caps, effective: caps, permitted: caps},
      rlimits: [
        {type: 'RLIMIT_NOFILE', hard: input.nofile ?? 65536, soft: input.nofile ?? 65536},
        {type: 'RLIMIT_CORE', hard: 0, soft: 0},
      ],
      noNewPrivileges: true,
    },
    root: {path: input.rootfs, readonly: false},
    hostname: input.id,
    mounts,
    linux,
  }
}
