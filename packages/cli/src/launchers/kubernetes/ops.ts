/**
 * The kubernetes launcher's cluster work: make, wait for, delete and find one VM's objects
 * (pod, NetworkPolicies, PVC), all labelled app.kubernetes.io/managed-by=agent,
 * agent.dev/state=<this state dir>, agent.dev/vm=<id>. Loaded only when a kubernetes VM is
 * touched (it loads @kubernetes/client-node).
 *
 * Removal works from labels, not from what we remember making: whatever a killed agent left
 * behind is found and deleted the same way.
 */
import {existsSync} from 'node:fs'
import type {V1NetworkPolicy, V1Pod} from '@kubernetes/client-node'
import type {StatePaths} from '../../config/state-dir.js'
import {AgentError, errorMessage} from '../../errors.js'
import {logger} from '../../logging/logger.js'
import type {VmRecord} from '../../state/vm-record.js'
import type {LaunchContext, RuntimeState} from '../launcher.js'
import {call, connect, deleteQuietly, type Cluster} from './client.js'
import {loadPlacement, resolveSettings, savePlacement, stateId, usedMarker, usedPlaces, type K8sSettings} from './config.js'
import {buildPolicies} from './network-policy.js'
import {buildPod, buildPvc, podName, recordAnnotation, selector, STATE_LABEL, VM_LABEL, RECORD_ANNOTATION} from './pod-spec.js'
import {podVerdict, waitGone, waitReady} from './pod-wait.js'
import {recordFromAnnotation} from './record.js'

export interface Target {
  c: Cluster
  settings: K8sSettings
  stateId: string
}

/** The cluster and namespace of a VM: where it was made, else (a VM found by label, a half-made one) the current settings. */
export function targetFor(paths: StatePaths, vmId: string, flags: Readonly<Record<string, string>> = {}): Target {
  const base = resolveSettings(paths.root, process.env, flags)
  const placed = loadPlacement(paths, vmId)
  const settings: K8sSettings = placed
    ? {
        ...base,
        context: placed.context ?? base.context,
        namespace: placed.namespace,
        runtimeClass: placed.runtimeClass === undefined ? base.runtimeClass : placed.runtimeClass,
        imagePullPolicy: placed.imagePullPolicy ?? base.imagePullPolicy,
      }
    : base
  return {c: connect(settings), settings, stateId: stateId(paths.root)}
}

async function createIgnoringExisting(c: Cluster, what: string, fn: () => Promise<unknown>): Promise<void> {
  try {
    await call(c, `create ${what}`, fn)
  } catch (err) {
    // Our own name and labels: a retried step, not someone else's object.
    if (err instanceof AgentError && err.kind === 'conflict') return
    throw err
  }
}

/** Policies (first: the pod never runs unfenced), the PVC, then the pod; returns when it is Ready. */
export async function createVmObjects(vm: VmRecord, ctx: LaunchContext): Promise<string> {
  ctx.step?.('kubernetes settings')
  const t = targetFor(ctx.paths, vm.id, ctx.options)
  const {c, settings, stateId: sid} = t
  const record = recordAnnotation(vm)
  // Checked before anything is made: what a NetworkPolicy cannot say is refused here.
  const policies = buildPolicies({vm, namespace: c.namespace, stateId: sid, record})
  // Recorded before anything is made, so a rollback or a later clean finds the namespace.
  savePlacement(ctx.paths, vm.id, {context: c.context, namespace: c.namespace, runtimeClass: settings.runtimeClass, imagePullPolicy: settings.imagePullPolicy})
  ctx.step?.('network policies')
  for (const p of policies) await createIgnoringExisting(c, `NetworkPolicy ${p.metadata!.name}`, () => c.net.createNamespacedNetworkPolicy({namespace: c.namespace, body: p}))
  if (vm.persist) {
    ctx.step?.('persistent volume claim')
    const pvc = buildPvc({vm, settings, namespace: c.namespace, stateId: sid})
    await createIgnoringExisting(c, `PersistentVolumeClaim ${pvc.metadata!.name}`, () => c.core.createNamespacedPersistentVolumeClaim({namespace: c.namespace, body: pvc}))
  }
  await bootPod(t, vm, ctx)
  return `${c.namespace}/${podName(vm.id)}`
}

/** Makes the pod and waits for it to be Ready. */
export async function bootPod(t: Target, vm: VmRecord, ctx: LaunchContext): Promise<void> {
  const {c, settings, stateId: sid} = t
  ctx.step?.('pod')
  const pod = buildPod({vm, settings, namespace: c.namespace, stateId: sid, env: ctx.env})
  await call(c, `create pod ${pod.metadata!.name} in namespace ${c.namespace}`, () => c.core.createNamespacedPod({namespace: c.namespace, body: pod}))
  ctx.step?.('waiting for the pod to be ready')
  await waitReady(c, podName(vm.id), settings.readyTimeoutSec)
}

/** Deletes the pod and waits until it is gone (the PVC and policies stay: vm start needs them). */
export async function deletePod(t: Target, vmId: string, wait: boolean): Promise<void> {
  const {c} = t
  const name = podName(vmId)
  await deleteQuietly(c, `delete pod ${name}`, () => c.core.deleteNamespacedPod({name, namespace: c.namespace, gracePeriodSeconds: 5}))
  if (wait) await waitGone(c, name)
}

/** Deletes every object labelled for the VM: pods, NetworkPolicies, PVCs. */
export async function removeVmObjects(t: Target, vmId: string): Promise<void> {
  const {c, stateId: sid} = t
  const labelSelector = selector(sid, vmId)
  const ns = c.namespace
  let pods
  try {
    pods = await call(c, `list pods of ${vmId}`, () => c.core.listNamespacedPod({namespace: ns, labelSelector}))
  } catch (err) {
    // No namespace: nothing of ours can be in it.
    if (err instanceof AgentError && err.kind === 'not_found') return
    throw err
  }
  for (const p of pods.items) {
    const name = p.metadata?.name
    if (name) await deleteQuietly(c, `delete pod ${name}`, () => c.core.deleteNamespacedPod({name, namespace: ns, gracePeriodSeconds: 0}))
  }
  const pols = await call(c, `list NetworkPolicies of ${vmId}`, () => c.net.listNamespacedNetworkPolicy({namespace: ns, labelSelector}))
  for (const p of pols.items) {
    const name = p.metadata?.name
    if (name) await deleteQuietly(c, `delete NetworkPolicy ${name}`, () => c.net.deleteNamespacedNetworkPolicy({name, namespace: ns}))
  }
  const pvcs = await call(c, `list PersistentVolumeClaims of ${vmId}`, () => c.core.listNamespacedPersistentVolumeClaim({namespace: ns, labelSelector}))
  for (const p of pvcs.items) {
    const name = p.metadata?.name
    if (name) await deleteQuietly(c, `delete PersistentVolumeClaim ${name}`, () => c.core.deleteNamespacedPersistentVolumeClaim({name, namespace: ns}))
  }
}

/** A pod's state as the VM service counts it. */
export function podState(pod: V1Pod | undefined, vm: Pick<VmRecord, 'status'>): RuntimeState {
  if (!pod || pod.metadata?.deletionTimestamp) return vm.status === 'stopped' ? 'stopped' : 'missing'
  const v = podVerdict(pod)
  return v.state === 'failed' ? 'missing' : 'running'
}

/** This state dir's pods in one namespace, by VM id. */
async function podsByVm(c: Cluster, sid: string): Promise<Map<string, V1Pod>> {
  const pods = await call(c, `list pods in namespace ${c.namespace}`, () => c.core.listNamespacedPod({namespace: c.namespace, labelSelector: selector(sid)}))
  const out = new Map<string, V1Pod>()
  for (const p of pods.items) {
    const id = p.metadata?.labels?.[VM_LABEL]
    if (id && p.metadata?.labels?.[STATE_LABEL] === sid) out.set(id, p)
  }
  return out
}

/** Each VM's state, with one list call per namespace in use. */
export async function vmStates(vms: readonly VmRecord[], paths: StatePaths): Promise<Map<string, RuntimeState>> {
  const groups = new Map<string, {t: Target; vms: VmRecord[]}>()
  for (const vm of vms) {
    const t = targetFor(paths, vm.id)
    const key = `${t.c.context}\0${t.c.namespace}`
    if (!groups.has(key)) groups.set(key, {t, vms: []})
    groups.get(key)!.vms.push(vm)
  }
  const out = new Map<string, RuntimeState>()
  for (const {t, vms: group} of groups.values()) {
    const pods = await podsByVm(t.c, t.stateId)
    for (const vm of group) out.set(vm.id, podState(pods.get(vm.id), vm))
  }
  return out
}

/**
 * This state dir's VMs on the cluster, from their pods (running) and deny-all policies (a VM
 * whose pod is gone: stopped). Only asked when the state dir has used the launcher.
 */
export async function discoverVms(paths: StatePaths): Promise<VmRecord[]> {
  if (!existsSync(usedMarker(paths))) return []
  const base = resolveSettings(paths.root, process.env)
  // Where VMs were made, and where they would be made now.
  const places = new Map<string, {context?: string; namespace?: string}>()
  for (const p of [{context: base.context, namespace: base.namespace}, ...usedPlaces(paths)]) places.set(`${p.context ?? ''}\0${p.namespace ?? ''}`, p)
  const sid = stateId(paths.root)
  const found = new Map<string, VmRecord>()
  for (const place of places.values()) {
    try {
      await discoverIn(paths, connect({...base, ...place}), sid, found)
    } catch (err) {
      // A namespace that is gone holds none of our VMs any more; another place may still answer.
      if (!(err instanceof AgentError && err.kind === 'not_found')) logger().warn(`cannot look for this state dir's VMs in ${place.context ?? 'the current context'}/${place.namespace ?? 'its namespace'}: ${errorMessage(err)}`)
    }
  }
  return [...found.values()]
}

async function discoverIn(paths: StatePaths, c: Cluster, sid: string, found: Map<string, VmRecord>): Promise<void> {
  const pods = await podsByVm(c, sid)
  for (const [id, pod] of pods) {
    if (pod.metadata?.deletionTimestamp) continue
    const r = recordFromAnnotation(pod.metadata?.annotations?.[RECORD_ANNOTATION], id, podState(pod, {status: 'running'}) === 'running' ? 'running' : 'missing', `${c.namespace}/${podName(id)}`)
    if (r) {
      found.set(id, r)
      if (!loadPlacement(paths, id)) savePlacement(paths, id, {context: c.context, namespace: c.namespace})
    } else logger().warn(`pod ${pod.metadata?.name} in ${c.namespace} is labelled for this state dir but its record annotation does not check out; left alone`)
  }
  const pols = await call(c, `list NetworkPolicies in namespace ${c.namespace}`, () => c.net.listNamespacedNetworkPolicy({namespace: c.namespace, labelSelector: selector(sid)}))
  for (const p of pols.items as V1NetworkPolicy[]) {
    const id = p.metadata?.labels?.[VM_LABEL]
    const raw = p.metadata?.annotations?.[RECORD_ANNOTATION]
    if (!id || found.has(id) || raw === undefined || p.metadata?.deletionTimestamp) continue
    const r = recordFromAnnotation(raw, id, 'stopped', null)
    if (r) {
      found.set(id, r)
      if (!loadPlacement(paths, id)) savePlacement(paths, id, {context: c.context, namespace: c.namespace})
    }
  }
}
