/**
 * What `agent doctor` says about the kubernetes launcher: the kubeconfig, whether the cluster
 * answers, the namespace, the RuntimeClass, and whether our credentials may do each thing the
 * launcher does (SelfSubjectAccessReview, one per verb and resource). Nothing is checked when
 * nothing points at a cluster: no kubeconfig and no AGENT_K8S_* setting.
 */
import {errorMessage} from '../../errors.js'
import type {HostCheck, HostProbe} from '../launcher.js'
import {call, connect, type Cluster} from './client.js'
import {configured, resolveSettings} from './config.js'

const NEEDED = ['kubernetes' as const]

/** Every request the launcher makes, as (verb, resource, subresource). */
export const PERMISSIONS: ReadonlyArray<{verb: string; resource: string; subresource?: string; group?: string}> = [
  {verb: 'create', resource: 'pods'},
  {verb: 'get', resource: 'pods'},
  {verb: 'list', resource: 'pods'},
  {verb: 'watch', resource: 'pods'},
  {verb: 'delete', resource: 'pods'},
  {verb: 'create', resource: 'pods', subresource: 'exec'},
  {verb: 'get', resource: 'pods', subresource: 'exec'},
  {verb: 'create', resource: 'networkpolicies', group: 'networking.k8s.io'},
  {verb: 'list', resource: 'networkpolicies', group: 'networking.k8s.io'},
  {verb: 'delete', resource: 'networkpolicies', group: 'networking.k8s.io'},
  {verb: 'create', resource: 'persistentvolumeclaims'},
  {verb: 'list', resource: 'persistentvolumeclaims'},
  {verb: 'delete', resource: 'persistentvolumeclaims'},
]

const label = (p: (typeof PERMISSIONS)[number]) => `${p.verb} ${p.resource}${p.subresource ? `/${p.subresource}` : ''}`

async function permissions(c: Cluster): Promise<HostCheck> {
  const missing: string[] = []
  for (const p of PERMISSIONS) {
    const r = await call(c, `review access to ${label(p)}`, () =>
      c.authz.createSelfSubjectAccessReview({
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SelfSubjectAccessReview',
          spec: {resourceAttributes: {namespace: c.namespace, verb: p.verb, resource: p.resource, subresource: p.subresource, group: p.group ?? ''}},
        },
      }),
    )
    if (r.status?.allowed !== true) missing.push(label(p))
  }
  const base = {id: 'k8s-permissions', title: 'k8s permissions', neededBy: NEEDED}
  if (!missing.length) return {...base, ok: true, detail: `all ${PERMISSIONS.length} needed in namespace ${c.namespace}`}
  return {...base, ok: false, detail: `not allowed in namespace ${c.namespace}: ${missing.join(', ')}`, fix: 'bind the Role in docs/scale-out.md to this user or service account'}
}

export async function k8sChecks(host: HostProbe): Promise<HostCheck[]> {
  if (!configured(host.paths.root, host.env)) return []
  const out: HostCheck[] = []
  let c: Cluster
  let runtimeClass: string | null
  try {
    const s = resolveSettings(host.paths.root, host.env)
    runtimeClass = s.runtimeClass
    c = connect(s)
    out.push({id: 'k8s-config', title: 'kubeconfig', ok: true, detail: `${s.kubeconfig}: context ${c.context}, ${c.server}`, neededBy: NEEDED})
  } catch (err) {
    return [{id: 'k8s-config', title: 'kubeconfig', ok: false, detail: errorMessage(err), fix: 'set AGENT_K8S_KUBECONFIG (or KUBECONFIG) and AGENT_K8S_CONTEXT', neededBy: NEEDED}]
  }
  try {
    const v = await call(c, 'ask the cluster its version', () => c.version.getCode(), 10_000)
    out.push({id: 'k8s-cluster', title: 'k8s cluster', ok: true, detail: `${c.server} answers: Kubernetes ${v.gitVersion}`, neededBy: NEEDED})
  } catch (err) {
    out.push({id: 'k8s-cluster', title: 'k8s cluster', ok: false, detail: errorMessage(err), fix: 'check the cluster is up and reachable from here', neededBy: NEEDED})
    return out
  }
  try {
    await call(c, `read namespace ${c.namespace}`, () => c.core.readNamespace({name: c.namespace}))
    out.push({id: 'k8s-namespace', title: 'k8s namespace', ok: true, detail: `${c.namespace} exists`, neededBy: NEEDED})
  } catch (err) {
    out.push({id: 'k8s-namespace', title: 'k8s namespace', ok: false, detail: errorMessage(err), fix: `kubectl create namespace ${c.namespace}, or set AGENT_K8S_NAMESPACE`, neededBy: NEEDED})
  }
  if (runtimeClass) {
    try {
      const rc = await call(c, `read RuntimeClass ${runtimeClass}`, () => c.node.readRuntimeClass({name: runtimeClass!}))
      out.push({id: 'k8s-runtime-class', title: 'k8s runtime class', ok: true, detail: `${runtimeClass} exists (handler ${rc.handler})`, neededBy: NEEDED})
    } catch (err) {
      out.push({
        id: 'k8s-runtime-class', title: 'k8s runtime class', ok: false, detail: errorMessage(err), neededBy: NEEDED,
        fix: `install ${runtimeClass} on the nodes and create its RuntimeClass (docs/scale-out.md), or set AGENT_K8S_RUNTIME_CLASS (none: the cluster default runtime)`,
      })
    }
  } else {
    out.push({id: 'k8s-runtime-class', title: 'k8s runtime class', ok: true, detail: 'none asked for: pods run with the cluster\'s default runtime (no sandbox beyond the container)', neededBy: NEEDED})
  }
  try {
    out.push(await permissions(c))
  } catch (err) {
    out.push({id: 'k8s-permissions', title: 'k8s permissions', ok: false, detail: errorMessage(err), fix: 'allow create on selfsubjectaccessreviews (every user has it by default)', neededBy: NEEDED})
  }
  return out
}
