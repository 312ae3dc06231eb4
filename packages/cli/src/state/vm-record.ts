/** What a VM row holds. The schema lives in state/vm.entity.ts and state/migrations. */
export type VmStatus = 'creating' | 'running' | 'stopped' | 'failed' | 'missing' | 'cleaning'
export const VM_STATUSES: readonly VmStatus[] = ['creating', 'running', 'stopped', 'failed', 'missing', 'cleaning']
/** none: loopback only. allow_all: the public internet only. allow: only the addresses and domains of `egressAllow`. */
export type NetworkMode = 'none' | 'allow_all' | 'allow'
export const NETWORK_MODES: readonly NetworkMode[] = ['none', 'allow_all', 'allow']
export type LauncherName = 'gvisor' | 'runc' | 'krunvm' | 'kubernetes'
export const LAUNCHER_NAMES: readonly LauncherName[] = ['gvisor', 'runc', 'krunvm', 'kubernetes']

export interface VmRecord {
  /** `<language>-<8 hex>` */
  id: string
  name: string | null
  language: string
  /** The runtime version (`3.13`) when known; null for runtimes without versions or an image given by override. */
  version: string | null
  /** The runtime plugin that provided the language, as `name@version`. */
  plugin: string
  image: string
  /** Why that image was chosen: flag, env, config, local, remote. */
  imageSource: string
  launcher: LauncherName
  cpus: number
  memoryMib: number
  diskMib: number
  pids: number
  network: NetworkMode
  /** network `allow`: the CIDRs and domain names the VM may reach (launchers/egress-policy.ts); null otherwise. */
  egressAllow: string[] | null
  /** `--allow-host` holes through the egress filter: `ADDR[/BITS][:PORT]` ([v6]:PORT); null when none. */
  allowHosts: string[] | null
  persist: boolean
  /** Size of the /persist file system in MiB; null for VMs made before it was bounded (a plain dir). */
  persistMib: number | null
  status: VmStatus
  /** Launcher references: buildah/krunvm container, mounted rootfs, OCI bundle dir. */
  containerRef: string | null
  rootfsRef: string | null
  bundleRef: string | null
  /** The pid of the agent process doing a create/clean, so a killed one can be detected. */
  ownerPid: number | null
  createdAt: Date
  updatedAt: Date
  lastError: string | null
}

/** A full record with agent's defaults (1 CPU, 256 MiB, 1 GiB disk, 256 pids, no network). */
export function vmRecord(fields: Pick<VmRecord, 'id'> & Partial<VmRecord>): VmRecord {
  const now = new Date()
  return {
    name: null,
    language: fields.id.replace(/-[0-9a-f]{8}$/, ''),
    version: null,
    plugin: '',
    image: '',
    imageSource: '',
    launcher: 'gvisor',
    cpus: 1,
    memoryMib: 256,
    diskMib: 1024,
    pids: 256,
    network: 'none',
    egressAllow: null,
    allowHosts: null,
    persist: false,
    persistMib: null,
    status: 'creating',
    containerRef: null,
    rootfsRef: null,
    bundleRef: null,
    ownerPid: null,
    createdAt: now,
    updatedAt: now,
    lastError: null,
    ...fields,
  }
}

/** python@3.13, or just the language when the VM records no version. */
export function languageLabel(vm: Pick<VmRecord, 'language' | 'version'>): string {
  return vm.version ? `${vm.language}@${vm.version}` : vm.language
}

/** The egress policy in one word or phrase, as `vm list` shows it: `allow_all`, `allow:pypi.org,10.1.2.0/24`, `+ 2 holes`. */
export function networkLabel(vm: Pick<VmRecord, 'network' | 'egressAllow' | 'allowHosts'>): string {
  const base = vm.network === 'allow' ? `allow:${(vm.egressAllow ?? []).join(',')}` : vm.network
  const holes = vm.allowHosts ?? []
  return holes.length ? `${base} +host ${holes.join(',')}` : base
}
