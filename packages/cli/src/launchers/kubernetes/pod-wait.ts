/**
 * Waiting for a pod: until it is Ready, or until it shows a reason it never will be (image pull,
 * unschedulable, a container that cannot start), which becomes the error with the pod's own
 * words. A watch (resumed from the last resourceVersion when the server ends it; relisted after
 * 410 Gone, as a well-behaved client does) rather than polling.
 */
import * as k8s from '@kubernetes/client-node'
import type {V1Pod} from '@kubernetes/client-node'
import {AgentError, errorMessage, unavailable} from '../../errors.js'
import {logger} from '../../logging/logger.js'
import {call, type Cluster, isNotFound} from './client.js'
import {CONTAINER} from './pod-spec.js'

export type Verdict = {state: 'ready'} | {state: 'waiting'; why: string} | {state: 'failed'; reason: string; message: string; kind: 'image' | 'unavailable'}

/** Container waiting reasons that will not go away by waiting. */
const FATAL_WAITING: Record<string, 'image' | 'unavailable'> = {
  ErrImagePull: 'image',
  ImagePullBackOff: 'image',
  InvalidImageName: 'image',
  ErrImageNeverPull: 'image',
  CreateContainerConfigError: 'unavailable',
  CreateContainerError: 'unavailable',
  RunContainerError: 'unavailable',
  CrashLoopBackOff: 'unavailable',
}

const clip = (s: unknown, n = 500) => (typeof s === 'string' ? s.slice(0, n).replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '?') : '')

/** What a pod's status says about its future (pure: the pod's fields are the cluster's, maybe hostile). */
export function podVerdict(pod: V1Pod): Verdict {
  const st = pod.status ?? {}
  const conds = st.conditions ?? []
  const sched = conds.find((c) => c.type === 'PodScheduled')
  if (sched?.status === 'False' && sched.reason === 'Unschedulable') {
    return {state: 'failed', kind: 'unavailable', reason: 'Unschedulable', message: clip(sched.message) || 'no node can take the pod'}
  }
  const cs = (st.containerStatuses ?? []).find((c) => c.name === CONTAINER)
  const waiting = cs?.state?.waiting
  if (waiting?.reason && FATAL_WAITING[waiting.reason]) {
    return {state: 'failed', kind: FATAL_WAITING[waiting.reason]!, reason: clip(waiting.reason, 64), message: clip(waiting.message) || waiting.reason}
  }
  const term = cs?.state?.terminated
  if (st.phase === 'Failed' || st.phase === 'Succeeded' || term) {
    const why = term ? `${clip(term.reason, 64) || 'terminated'} (exit ${term.exitCode})${term.message ? `: ${clip(term.message)}` : ''}` : clip(st.message) || clip(st.reason, 64) || `phase ${st.phase}`
    return {state: 'failed', kind: 'unavailable', reason: clip(term?.reason, 64) || clip(st.reason, 64) || String(st.phase), message: `the sandbox container ended: ${why}`}
  }
  if (st.phase === 'Running' && conds.some((c) => c.type === 'Ready' && c.status === 'True')) return {state: 'ready'}
  return {state: 'waiting', why: waiting?.reason ? clip(waiting.reason, 64) : `phase ${clip(st.phase, 32) || 'unknown'}`}
}

function verdictError(name: string, v: Extract<Verdict, {state: 'failed'}>): AgentError {
  const hint =
    v.kind === 'image'
      ? 'the cluster must be able to pull the image: push it to a registry the nodes reach and set AGENT_K8S_IMAGE_PREFIX (or kubernetes.imagePrefix), or check imagePullPolicy'
      : v.reason === 'Unschedulable'
        ? 'lower --cpu/--mem/--disk, or check the node selectors and tolerations in config.json'
        : undefined
  return new AgentError(v.kind, `pod ${name} will not start: ${v.reason}: ${v.message}`, {hint})
}

/** Waits until the pod is Ready; throws with the pod's own reason when it will not be. */
export async function waitReady(c: Cluster, name: string, timeoutSec: number, signal?: AbortSignal): Promise<V1Pod> {
  const watcher = new k8s.Watch(c.kc)
  const deadline = Date.now() + timeoutSec * 1000
  let last: V1Pod | undefined
  let lastWhy = 'not seen yet'
  for (;;) {
    signal?.throwIfAborted()
    // (Re)list: the pod's current state and the resourceVersion to watch from.
    const pod = await call(c, `read pod ${name}`, () => c.core.readNamespacedPod({name, namespace: c.namespace}))
    last = pod
    const v = podVerdict(pod)
    if (v.state === 'ready') return pod
    if (v.state === 'failed') throw verdictError(name, v)
    lastWhy = v.why
    let rv = pod.metadata?.resourceVersion
    const left = deadline - Date.now()
    if (left <= 0) break
    const outcome = await new Promise<{ready?: V1Pod; failed?: AgentError; relist?: boolean}>((resolve) => {
      let ctl: AbortController | undefined
      let settled = false
      const finish = (o: {ready?: V1Pod; failed?: AgentError; relist?: boolean}) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        ctl?.abort()
        resolve(o)
      }
      const timer = setTimeout(() => finish({relist: true}), left)
      const onAbort = () => finish({relist: true})
      signal?.addEventListener('abort', onAbort)
      watcher
        .watch(
          `/api/v1/namespaces/${c.namespace}/pods`,
          {fieldSelector: `metadata.name=${name}`, resourceVersion: rv, allowWatchBookmarks: true},
          (type: string, obj: unknown) => {
            if (type === 'ERROR') {
              const st = obj as {code?: number; message?: string}
              // 410 Gone: our resourceVersion is too old; relist and watch from the new one.
              logger().debug(`watch of pod ${name}: ERROR ${st?.code} ${clip(st?.message, 200)}; relisting`)
              finish({relist: true})
              return
            }
            const p = obj as V1Pod
            if (p?.metadata?.resourceVersion) rv = p.metadata.resourceVersion
            if (type === 'BOOKMARK') return
            if (type === 'DELETED') {
              finish({failed: unavailable(`pod ${name} was deleted while it started`)})
              return
            }
            if (p?.metadata?.name !== name) return
            last = p
            const pv = podVerdict(p)
            if (pv.state === 'ready') finish({ready: p})
            else if (pv.state === 'failed') finish({failed: verdictError(name, pv)})
            else lastWhy = pv.why
          },
          (err: unknown) => {
            if (err && !settled) logger().debug(`watch of pod ${name} ended: ${errorMessage(err)}`)
            // The server ends watches now and then: go round, relist and watch again.
            finish({relist: true})
          },
        )
        .then((a) => {
          ctl = a
          if (settled) a.abort()
        })
        .catch((err: unknown) => {
          logger().debug(`watch of pod ${name} failed: ${errorMessage(err)}`)
          setTimeout(() => finish({relist: true}), 500)
        })
    })
    if (outcome.ready) return outcome.ready
    if (outcome.failed) throw outcome.failed
    if (Date.now() >= deadline) break
  }
  void last
  throw unavailable(`pod ${name} was not Ready within ${timeoutSec} s (last seen: ${lastWhy})`, 'raise AGENT_K8S_READY_TIMEOUT, or see `kubectl describe pod` for why')
}

/** Waits until a deleted pod is gone, so a pod of the same name can be made again (vm start). */
export async function waitGone(c: Cluster, name: string, timeoutSec = 120): Promise<void> {
  const deadline = Date.now() + timeoutSec * 1000
  while (Date.now() < deadline) {
    try {
      await c.core.readNamespacedPod({name, namespace: c.namespace})
    } catch (err) {
      if (isNotFound(err)) return
    }
    await new Promise((r) => setTimeout(r, 500))
  }
  throw unavailable(`pod ${name} was still there ${timeoutSec} s after it was deleted`, 'see `kubectl describe pod` (a finalizer, or a node that does not answer)')
}
