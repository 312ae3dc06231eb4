/**
 * The one door to the cluster: @kubernetes/client-node 1.4.x (its 2.x line needs Node >= 22.19;
 * agent supports Node 20). Loaded only when a kubernetes VM is touched. Every API error becomes
 * an AgentError carrying the API server's own message (a Status body is parsed, never trusted
 * for more than its text and code).
 */
import {existsSync} from 'node:fs'
import * as k8s from '@kubernetes/client-node'
import {AgentError, conflict, errorMessage, unavailable, usageError} from '../../errors.js'
import type {K8sSettings} from './config.js'

export interface Cluster {
  kc: k8s.KubeConfig
  core: k8s.CoreV1Api
  net: k8s.NetworkingV1Api
  node: k8s.NodeV1Api
  authz: k8s.AuthorizationV1Api
  version: k8s.VersionApi
  /** The namespace pods go to. */
  namespace: string
  context: string
  server: string
  /** The exec subprotocol the server chose last time (exec.ts), once known. */
  protocol?: string
}

/** Reads the kubeconfig and picks the context; the namespace: the given, the context's, or default. */
export function connect(s: Pick<K8sSettings, 'kubeconfig' | 'context' | 'namespace'>): Cluster {
  const kc = new k8s.KubeConfig()
  try {
    // In a pod with no kubeconfig file (agent serve deployed in the cluster): the pod's service account.
    if (!existsSync(s.kubeconfig) && process.env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster()
    else kc.loadFromFile(s.kubeconfig)
  } catch (err) {
    throw unavailable(`cannot read the kubeconfig ${s.kubeconfig}: ${errorMessage(err)}`, 'set AGENT_K8S_KUBECONFIG (or KUBECONFIG) to a kubeconfig file for the cluster')
  }
  if (s.context) {
    if (!kc.getContextObject(s.context)) {
      throw usageError(`the kubeconfig ${s.kubeconfig} has no context ${JSON.stringify(s.context)}`, `its contexts: ${kc.getContexts().map((c) => c.name).join(', ') || 'none'}`)
    }
    kc.setCurrentContext(s.context)
  }
  const context = kc.getCurrentContext()
  const cluster = kc.getCurrentCluster()
  if (!context || !cluster) throw unavailable(`the kubeconfig ${s.kubeconfig} names no current context or cluster`, 'give --k8s-context or AGENT_K8S_CONTEXT')
  const namespace = s.namespace ?? kc.getContextObject(context)?.namespace ?? 'default'
  return {
    kc,
    core: kc.makeApiClient(k8s.CoreV1Api),
    net: kc.makeApiClient(k8s.NetworkingV1Api),
    node: kc.makeApiClient(k8s.NodeV1Api),
    authz: kc.makeApiClient(k8s.AuthorizationV1Api),
    version: kc.makeApiClient(k8s.VersionApi),
    namespace,
    context,
    server: cluster.server,
  }
}

/** What the API server said, from an ApiException's body (a Status JSON, as text or parsed). */
export function statusOf(err: unknown): {code?: number; reason?: string; message?: string} | undefined {
  if (!(err instanceof k8s.ApiException)) return undefined
  let body: unknown = err.body
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body)
    } catch {
      body = {message: (body as string).slice(0, 500)}
    }
  }
  const b = (body && typeof body === 'object' ? body : {}) as Record<string, unknown>
  const text = (v: unknown) => (typeof v === 'string' ? v.slice(0, 1000) : undefined)
  return {code: err.code, reason: text(b.reason), message: text(b.message)}
}

export const isNotFound = (err: unknown) => statusOf(err)?.code === 404

/** An API call's failure as an AgentError: what we were doing, and the server's own words. */
export function apiError(err: unknown, doing: string, c?: Pick<Cluster, 'server' | 'namespace'>): AgentError {
  if (err instanceof AgentError) return err
  const st = statusOf(err)
  if (!st) {
    return unavailable(`cannot ${doing}: the API server${c ? ` at ${c.server}` : ''} did not answer (${errorMessage(err)})`, 'check the cluster is up and the kubeconfig\'s server address (`agent doctor`)', err)
  }
  const said = `${st.message ?? `HTTP ${st.code}`}${st.reason ? ` (${st.reason})` : ''}`
  const msg = `cannot ${doing}: ${said}`
  const role = `the launcher needs pods, pods/exec, networkpolicies and persistentvolumeclaims in namespace ${c?.namespace ?? 'its namespace'} (docs/scale-out.md has the Role)`
  switch (st.code) {
    case 401:
      return unavailable(`${msg}: the API server refused the credentials`, 'renew the kubeconfig\'s token or certificate')
    case 403:
      if (/RuntimeClass/i.test(said)) return unavailable(msg, 'create the RuntimeClass on the cluster, or choose another with --k8s-runtime-class (none: the cluster default)')
      return unavailable(msg, role)
    case 404:
      return new AgentError('not_found', msg, {hint: /namespaces? "[^"]*" not found/.test(said) ? `create the namespace (kubectl create namespace ${c?.namespace ?? 'NAME'}), or choose one with --k8s-namespace or AGENT_K8S_NAMESPACE` : undefined})
    case 409:
      return conflict(msg)
    case 422:
      return usageError(msg, 'check the kubernetes settings (node selectors, tolerations, image prefix) in config.json')
    default:
      return new AgentError('unavailable', msg, {cause: err})
  }
}

/** Runs one API call with a bound on how long it may take and the error mapped. */
export async function call<T>(c: Pick<Cluster, 'server' | 'namespace'>, doing: string, fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(unavailable(`cannot ${doing}: the API server at ${c.server} did not answer within ${timeoutMs / 1000} s`)), timeoutMs)
  })
  try {
    return await Promise.race([fn(), late])
  } catch (err) {
    throw apiError(err, doing, c)
  } finally {
    clearTimeout(timer)
  }
}

/** A delete that is done when the object is already gone. */
export async function deleteQuietly(c: Cluster, doing: string, fn: () => Promise<unknown>): Promise<void> {
  try {
    await call(c, doing, fn)
  } catch (err) {
    if (err instanceof AgentError && err.kind === 'not_found') return
    throw err
  }
}
