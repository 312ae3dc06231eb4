/** What a VM row holds. The schema lives in state/vm.entity.ts and state/migrations. */
export type VmStatus = 'creating' | 'running' | 'stopped' | 'failed' | 'missing' | 'cleaning'
export const VM_STATUSES: readonly VmStatus[] = ['creating', 'running', 'stopped', 'failed', 'missing', 'cleaning']
export type NetworkMode = 'none' | 'allow_all'
export const NETWORK_MODES: readonly NetworkMode[] = ['none', 'allow_all']
export type LauncherName = 'gvisor' | 'runc' | 'krunvm'
export const LAUNCHER_NAMES: readonly LauncherName[] = ['gvisor', 'runc', 'krunvm']

export interface VmRecord {
  /** `<language>-<8 hex>` */
  id: string
  name: string | null
  language: string
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
  persist: boolean
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
