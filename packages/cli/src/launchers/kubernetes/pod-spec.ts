/**
 * The objects the kubernetes launcher makes for one VM: its pod and, with --persist, its
 * PersistentVolumeClaim. Pure functions (unit-tested against the Kubernetes schemas).
 *
 * The pod is locked down the way a cluster operator expects of an untrusted workload: no service
 * account token, no service links, no host namespaces, every capability dropped, no privilege
 * escalation, the runtime's default seccomp profile, a RuntimeClass (gVisor by default), and
 * requests = limits from --cpu, --mem and --disk (ephemeral-storage).
 */
import type {V1PersistentVolumeClaim, V1Pod} from '@kubernetes/client-node'
import type {VmRecord} from '../../state/vm-record.js'
import type {K8sSettings} from './config.js'

export const CONTAINER = 'sandbox'
export const MANAGED_BY = 'app.kubernetes.io/managed-by'
export const STATE_LABEL = 'agent.dev/state'
export const VM_LABEL = 'agent.dev/vm'
/** The VM's record as JSON, so that a VM is rebuilt from its pod when the database is lost. */
export const RECORD_ANNOTATION = 'agent.dev/record'
/** agent-init, where an image built for agent carries it. */
export const GUEST_INIT = '/.agent/agent-init'
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

export const podName = (id: string) => `agent-${id}`
export const pvcName = (id: string) => `agent-${id}-persist`

export function vmLabels(stateId: string, vmId: string): Record<string, string> {
  return {[MANAGED_BY]: 'agent', [STATE_LABEL]: stateId, [VM_LABEL]: vmId}
}

/** A label selector for this state dir's objects, or one VM's. */
export function selector(stateId: string, vmId?: string): string {
  const base = `${MANAGED_BY}=agent,${STATE_LABEL}=${stateId}`
  return vmId ? `${base},${VM_LABEL}=${vmId}` : base
}

/**
 * PID 1 of the pod: agent-init when the image carries it (it reaps orphans and ends on SIGTERM),
 * else a shell that sleeps and ends at once on SIGTERM, so a delete is quick.
 */
export const KEEPALIVE = [
  '/bin/sh',
  '-c',
  `if [ -x ${GUEST_INIT} ]; then exec ${GUEST_INIT} init; fi; trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done`,
]

/** The fields of a VM record kept on its pod. */
export type RecordFields = Pick<VmRecord, 'id' | 'name' | 'language' | 'version' | 'plugin' | 'image' | 'imageSource' | 'cpus' | 'memoryMib' | 'diskMib' | 'pids' | 'network' | 'egressAllow' | 'allowHosts' | 'persist' | 'persistMib'> & {createdAt: string}

export function recordAnnotation(vm: VmRecord): string {
  const r: RecordFields = {
    id: vm.id, name: vm.name, language: vm.language, version: vm.version, plugin: vm.plugin, image: vm.image, imageSource: vm.imageSource,
    cpus: vm.cpus, memoryMib: vm.memoryMib, diskMib: vm.diskMib, pids: vm.pids, network: vm.network, egressAllow: vm.egressAllow,
    allowHosts: vm.allowHosts, persist: vm.persist, persistMib: vm.persistMib, createdAt: vm.createdAt.toISOString(),
  }
  return JSON.stringify(r)
}

export interface PodInput {
  vm: VmRecord
  settings: K8sSettings
  namespace: string
  stateId: string
  /** The runtime plugin's environment for every guest command. */
  env: Readonly<Record<string, string>>
}

/** The /in, /out and /tmp volumes: empty dirs bounded by the VM's disk, as the host launchers' are. */
function scratch(name: string, mib: number) {
  return {name, emptyDir: {sizeLimit: `${mib}Mi`}}
}

export function buildPod(p: PodInput): V1Pod {
  const {vm, settings: s} = p
  const resources = {cpu: String(vm.cpus), memory: `${vm.memoryMib}Mi`, 'ephemeral-storage': `${vm.diskMib}Mi`}
  const env = Object.entries({PATH: DEFAULT_PATH, HOME: '/root', ...p.env}).map(([name, value]) => ({name, value}))
  const volumes: NonNullable<NonNullable<V1Pod['spec']>['volumes']> = [scratch('in', vm.diskMib), scratch('out', vm.diskMib), scratch('tmp', vm.diskMib)]
  const mounts = [
    {name: 'in', mountPath: '/in'},
    {name: 'out', mountPath: '/out'},
    {name: 'tmp', mountPath: '/tmp'},
  ]
  if (vm.persist) {
    volumes.push({name: 'persist', persistentVolumeClaim: {claimName: pvcName(vm.id)}})
    mounts.push({name: 'persist', mountPath: '/persist'})
  }
  const nonRoot = s.runAsUser !== undefined
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: podName(vm.id),
      namespace: p.namespace,
      labels: vmLabels(p.stateId, vm.id),
      annotations: {[RECORD_ANNOTATION]: recordAnnotation(vm)},
    },
    spec: {
      ...(s.runtimeClass ? {runtimeClassName: s.runtimeClass} : {}),
      restartPolicy: 'Never',
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      hostNetwork: false,
      hostPID: false,
      hostIPC: false,
      shareProcessNamespace: false,
      hostname: vm.id,
      terminationGracePeriodSeconds: 5,
      ...(Object.keys(s.nodeSelector).length ? {nodeSelector: {...s.nodeSelector}} : {}),
      ...(s.tolerations.length ? {tolerations: s.tolerations.map((t) => ({...t}))} : {}),
      securityContext: {
        seccompProfile: {type: 'RuntimeDefault'},
        ...(nonRoot ? {runAsNonRoot: true, runAsUser: s.runAsUser, runAsGroup: s.runAsUser, fsGroup: s.runAsUser} : {}),
      },
      containers: [
        {
          name: CONTAINER,
          image: s.imagePrefix + vm.image,
          imagePullPolicy: s.imagePullPolicy,
          command: [...KEEPALIVE],
          workingDir: '/',
          env,
          resources: {requests: {...resources}, limits: {...resources}},
          securityContext: {
            allowPrivilegeEscalation: false,
            privileged: false,
            capabilities: {drop: ['ALL']},
            seccompProfile: {type: 'RuntimeDefault'},
            ...(nonRoot ? {runAsNonRoot: true} : {}),
          },
          volumeMounts: mounts,
          stdin: false,
          tty: false,
        },
      ],
      volumes,
    },
  }
}

export function buildPvc(p: Omit<PodInput, 'env'>): V1PersistentVolumeClaim {
  const mib = p.vm.persistMib ?? 1024
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: {name: pvcName(p.vm.id), namespace: p.namespace, labels: vmLabels(p.stateId, p.vm.id)},
    spec: {
      accessModes: ['ReadWriteOnce'],
      resources: {requests: {storage: `${mib}Mi`}},
      ...(p.settings.storageClass ? {storageClassName: p.settings.storageClass} : {}),
    },
  }
}
