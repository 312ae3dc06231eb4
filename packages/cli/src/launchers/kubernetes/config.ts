/**
 * The kubernetes launcher's settings: flags (`vm create --k8s-*`), AGENT_K8S_* variables, the
 * "kubernetes" object of <state>/config.json, then defaults, in that order. Pure and cheap: no
 * client library is loaded here, so `vm create --help` and doctor stay fast.
 *
 * A VM keeps the context and namespace it was made in (<vmDir>/kubernetes.json), so later
 * commands reach its pod even when the environment changes.
 */
import {createHash} from 'node:crypto'
import {existsSync, mkdirSync, readFileSync} from 'node:fs'
import {hostname, homedir} from 'node:os'
import {join, resolve} from 'node:path'
import {configSection} from '../../config/state-config.js'
import type {StatePaths} from '../../config/state-dir.js'
import {errorMessage, usageError} from '../../errors.js'
import {writeFileAtomic} from '../../util/files.js'
import type {LauncherOption} from '../launcher.js'

export const PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'] as const
export type PullPolicy = (typeof PULL_POLICIES)[number]

export interface Toleration {
  key?: string
  operator?: 'Exists' | 'Equal'
  value?: string
  effect?: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute'
  tolerationSeconds?: number
}

export interface K8sSettings {
  /** The kubeconfig file: AGENT_K8S_KUBECONFIG, else KUBECONFIG, else ~/.kube/config. */
  kubeconfig: string
  /** A context of that file; undefined: its current context. */
  context?: string
  /** undefined: the context's namespace, else "default" (settled once the kubeconfig is read). */
  namespace?: string
  /** `runtimeClassName` of every pod; "none" leaves it out (the cluster's default runtime). */
  runtimeClass: string | null
  imagePullPolicy: PullPolicy
  /** Put before agent's image reference (`registry.example.com/agent/`), for a cluster that pulls from a registry. */
  imagePrefix: string
  nodeSelector: Record<string, string>
  tolerations: Toleration[]
  /** Run the sandbox as this uid (sets runAsNonRoot); undefined: the image's user. */
  runAsUser?: number
  /** StorageClass of --persist volumes; undefined: the cluster's default. */
  storageClass?: string
  /** Seconds to wait for a pod to become Ready. */
  readyTimeoutSec: number
}

export const K8S_OPTIONS: readonly LauncherOption[] = [
  {launcher: 'kubernetes', flag: 'k8s-context', summary: 'the kubeconfig context (default AGENT_K8S_CONTEXT, config.json, the current context)'},
  {launcher: 'kubernetes', flag: 'k8s-namespace', summary: 'the namespace of the pod (default AGENT_K8S_NAMESPACE, config.json, the context\'s namespace, default)'},
  {launcher: 'kubernetes', flag: 'k8s-runtime-class', summary: 'the pod\'s RuntimeClass, e.g. gvisor or kata; none for the cluster default (default gvisor)'},
  {launcher: 'kubernetes', flag: 'k8s-image-pull-policy', values: PULL_POLICIES, summary: 'the pod\'s imagePullPolicy (default IfNotPresent)'},
]

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const LABEL_NAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/

type Json = Record<string, unknown>

/** The "kubernetes" object of <state>/config.json, or {}. A broken file is a usage error. */
export function fileSettings(stateRoot: string): Json {
  return configSection(stateRoot, 'kubernetes') as Json
}

function str(v: unknown, what: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined
  if (typeof v !== 'string') throw usageError(`${what} must be a string (got ${JSON.stringify(v)})`)
  return v
}

export function checkNamespace(ns: string, what = 'namespace'): string {
  if (!DNS_LABEL.test(ns)) throw usageError(`${what} ${JSON.stringify(ns)} is not a valid namespace name (lower-case letters, digits and '-', at most 63)`)
  return ns
}

function checkRuntimeClass(v: string, what: string): string | null {
  if (v === 'none') return null
  if (!DNS_SUBDOMAIN.test(v)) throw usageError(`${what} ${JSON.stringify(v)} is not a valid RuntimeClass name`, 'e.g. gvisor, kata, or none for the cluster default')
  return v
}

function checkPull(v: string, what: string): PullPolicy {
  if (!(PULL_POLICIES as readonly string[]).includes(v)) throw usageError(`${what} must be one of ${PULL_POLICIES.join(', ')} (got ${JSON.stringify(v)})`)
  return v as PullPolicy
}

function checkPrefix(v: string, what: string): string {
  if (/[\s@]/.test(v) || v.length > 200) throw usageError(`${what} ${JSON.stringify(v)} is not an image registry prefix`, 'e.g. registry.example.com/agent/')
  return v
}

export function checkNodeSelector(v: unknown, what = 'kubernetes.nodeSelector'): Record<string, string> {
  if (v === undefined) return {}
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw usageError(`${what} must be an object of label: value`)
  const out: Record<string, string> = {}
  for (const [k, val] of Object.entries(v as Json)) {
    if (!LABEL_NAME.test(k) || typeof val !== 'string' || !LABEL_VALUE.test(val)) throw usageError(`${what}: ${JSON.stringify(k)}: ${JSON.stringify(val)} is not a valid label selector entry`)
    out[k] = val
  }
  return out
}

export function checkTolerations(v: unknown, what = 'kubernetes.tolerations'): Toleration[] {
  if (v === undefined) return []
  if (!Array.isArray(v)) throw usageError(`${what} must be a list of tolerations`)
  return v.map((t, i) => {
    const at = `${what}[${i}]`
    if (!t || typeof t !== 'object' || Array.isArray(t)) throw usageError(`${at} must be an object`)
    const allowed = ['key', 'operator', 'value', 'effect', 'tolerationSeconds']
    const extra = Object.keys(t).find((k) => !allowed.includes(k))
    if (extra) throw usageError(`${at} has an unknown field ${JSON.stringify(extra)} (known: ${allowed.join(', ')})`)
    const o = t as Toleration
    if (o.key !== undefined && (typeof o.key !== 'string' || !LABEL_NAME.test(o.key))) throw usageError(`${at}.key is not a valid label name`)
    if (o.operator !== undefined && o.operator !== 'Exists' && o.operator !== 'Equal') throw usageError(`${at}.operator must be Exists or Equal`)
    if (o.value !== undefined && (typeof o.value !== 'string' || !LABEL_VALUE.test(o.value))) throw usageError(`${at}.value is not a valid label value`)
    if (o.operator === 'Exists' && o.value) throw usageError(`${at}: operator Exists takes no value`)
    if (o.effect !== undefined && !['NoSchedule', 'PreferNoSchedule', 'NoExecute'].includes(o.effect)) throw usageError(`${at}.effect must be NoSchedule, PreferNoSchedule or NoExecute`)
    if (o.tolerationSeconds !== undefined && (!Number.isInteger(o.tolerationSeconds) || o.effect !== 'NoExecute')) throw usageError(`${at}.tolerationSeconds must be whole seconds, with effect NoExecute`)
    return {...o}
  })
}

/** The kubeconfig file to read. */
export function kubeconfigPath(env: NodeJS.ProcessEnv, file: Json = {}): string {
  const p = env.AGENT_K8S_KUBECONFIG || str(file.kubeconfig, 'kubernetes.kubeconfig') || env.KUBECONFIG?.split(':')[0] || join(env.HOME || homedir(), '.kube', 'config')
  return resolve(p)
}

/** Whether anything at all points at a cluster (a kubeconfig exists, or a setting names one). */
export function configured(stateRoot: string, env: NodeJS.ProcessEnv): boolean {
  if (Object.keys(env).some((k) => k.startsWith('AGENT_K8S_')) || env.KUBERNETES_SERVICE_HOST) return true
  try {
    return existsSync(kubeconfigPath(env, fileSettings(stateRoot)))
  } catch {
    return true // a broken config.json is worth reporting
  }
}

/** Settings from the create flags, the environment and config.json, checked. */
export function resolveSettings(stateRoot: string, env: NodeJS.ProcessEnv = process.env, flags: Readonly<Record<string, string>> = {}): K8sSettings {
  const file = fileSettings(stateRoot)
  const pick = (flag: string, envName: string, key: string): [string, string] | undefined => {
    if (flags[flag] !== undefined) return [flags[flag]!, `--${flag}`]
    if (env[envName]) return [env[envName]!, envName]
    const v = str(file[key], `kubernetes.${key} in config.json`)
    return v === undefined ? undefined : [v, `kubernetes.${key} in config.json`]
  }
  const ctx = pick('k8s-context', 'AGENT_K8S_CONTEXT', 'context')
  if (ctx && (!ctx[0].trim() || ctx[0].length > 253)) throw usageError(`${ctx[1]}: ${JSON.stringify(ctx[0])} is not a context name`)
  const ns = pick('k8s-namespace', 'AGENT_K8S_NAMESPACE', 'namespace')
  const rc = pick('k8s-runtime-class', 'AGENT_K8S_RUNTIME_CLASS', 'runtimeClass')
  const pull = pick('k8s-image-pull-policy', 'AGENT_K8S_IMAGE_PULL_POLICY', 'imagePullPolicy')
  const prefix = pick('', 'AGENT_K8S_IMAGE_PREFIX', 'imagePrefix')
  const sc = pick('', 'AGENT_K8S_STORAGE_CLASS', 'storageClass')
  const readyText = env.AGENT_K8S_READY_TIMEOUT ?? (file.readyTimeoutSec === undefined ? undefined : String(file.readyTimeoutSec))
  const ready = readyText === undefined ? 300 : Number(readyText)
  if (!Number.isInteger(ready) || ready < 1 || ready > 3600) throw usageError(`the pod ready timeout (AGENT_K8S_READY_TIMEOUT or kubernetes.readyTimeoutSec) must be 1-3600 seconds (got ${JSON.stringify(readyText)})`)
  const uid = file.runAsUser
  if (uid !== undefined && (!Number.isInteger(uid) || (uid as number) < 1 || (uid as number) > 2 ** 31 - 1)) throw usageError('kubernetes.runAsUser in config.json must be a non-root uid (1 or more)')
  if (sc) checkRuntimeClass(sc[0], sc[1])
  return {
    kubeconfig: kubeconfigPath(env, file),
    context: ctx?.[0],
    namespace: ns ? checkNamespace(ns[0], ns[1]) : undefined,
    runtimeClass: rc ? checkRuntimeClass(rc[0], rc[1]) : 'gvisor',
    imagePullPolicy: pull ? checkPull(pull[0], pull[1]) : 'IfNotPresent',
    imagePrefix: prefix ? checkPrefix(prefix[0], prefix[1]) : '',
    nodeSelector: checkNodeSelector(file.nodeSelector),
    tolerations: checkTolerations(file.tolerations),
    runAsUser: uid as number | undefined,
    storageClass: sc?.[0],
    readyTimeoutSec: ready,
  }
}

/**
 * This state dir's identity on a cluster (the agent.dev/state label): AGENT_K8S_STATE_ID or
 * kubernetes.stateId when set (several agent processes sharing a cluster identity, e.g. replicas
 * of agent serve), else a hash of this host's name and the state dir's path.
 */
export function stateId(stateRoot: string, env: NodeJS.ProcessEnv = process.env): string {
  const given = env.AGENT_K8S_STATE_ID || str(fileSettings(stateRoot).stateId, 'kubernetes.stateId in config.json')
  if (given) {
    if (!LABEL_VALUE.test(given) || !given) throw usageError(`the state id ${JSON.stringify(given)} must be a valid label value (letters, digits, '-', '_', '.', at most 63)`)
    return given
  }
  return createHash('sha256').update(`${hostname()}:${resolve(stateRoot)}`).digest('hex').slice(0, 20)
}

/** Where this VM's pod lives and how it was asked for at create, so vm start makes the same pod. */
export interface VmPlacement {
  context?: string
  namespace: string
  runtimeClass?: string | null
  imagePullPolicy?: PullPolicy
}

const placementFile = (paths: StatePaths, id: string) => join(paths.vmDir(id), 'kubernetes.json')
/** Marks a state dir that has used the launcher, with every (context, namespace) it used: only then does `vm list` ask a cluster. */
export const usedMarker = (paths: StatePaths) => join(paths.root, 'kubernetes.used')

/** The places this state dir has made VMs in (the marker's list; a broken marker: none). */
export function usedPlaces(paths: StatePaths): Array<{context?: string; namespace: string}> {
  try {
    const m = JSON.parse(readFileSync(usedMarker(paths), 'utf8')) as {places?: unknown}
    if (!Array.isArray(m.places)) return []
    return m.places
      .filter((p): p is {context?: unknown; namespace: string} => !!p && typeof p.namespace === 'string' && DNS_LABEL.test(p.namespace))
      .map((p) => ({namespace: p.namespace, context: typeof p.context === 'string' ? p.context : undefined}))
      .slice(0, 64)
  } catch {
    return []
  }
}

export function savePlacement(paths: StatePaths, id: string, p: VmPlacement): void {
  mkdirSync(paths.vmDir(id), {recursive: true, mode: 0o700})
  writeFileAtomic(placementFile(paths, id), JSON.stringify(p) + '\n')
  const places = usedPlaces(paths)
  if (!existsSync(usedMarker(paths)) || !places.some((q) => q.namespace === p.namespace && q.context === p.context)) {
    writeFileAtomic(usedMarker(paths), JSON.stringify({places: [...places, {context: p.context, namespace: p.namespace}]}) + '\n')
  }
}

/** The recorded placement, or undefined (a VM found by label, a half-made one). Never trusts the file's shape. */
export function loadPlacement(paths: StatePaths, id: string): VmPlacement | undefined {
  const f = placementFile(paths, id)
  if (!existsSync(f)) return undefined
  try {
    const p = JSON.parse(readFileSync(f, 'utf8')) as Partial<VmPlacement>
    if (typeof p.namespace !== 'string' || !DNS_LABEL.test(p.namespace)) return undefined
    return {
      namespace: p.namespace,
      context: typeof p.context === 'string' ? p.context : undefined,
      runtimeClass: p.runtimeClass === null || (typeof p.runtimeClass === 'string' && DNS_SUBDOMAIN.test(p.runtimeClass)) ? p.runtimeClass : undefined,
      imagePullPolicy: (PULL_POLICIES as readonly unknown[]).includes(p.imagePullPolicy) ? p.imagePullPolicy : undefined,
    }
  } catch {
    return undefined
  }
}
