import {usageError} from '../errors.js'
import {logger} from '../logging/logger.js'
import type {ServiceContext} from '../services/context.js'
import type {VmStatus} from '../state/vm-record.js'
import {failIfAny} from './exec-command.js'

export interface LifecycleItem {
  id: string
  ok: boolean
  status: string | null
  error: string | null
}

/**
 * stop / start / clean over one or many VMs. One VM: plain output and its own error and exit
 * code. Several: concurrent under listr2, exit 0 only if all succeeded, a summary naming failures.
 */
export async function runLifecycle(
  ctx: ServiceContext,
  o: {refs: string[]; verb: string; concurrency?: number; json: boolean; single: boolean},
  act: (ref: string) => Promise<{id: string; status: string | null}>,
  print: (s: string) => void,
): Promise<LifecycleItem[]> {
  if (o.refs.length === 0) {
    logger().info(`no VMs to ${o.verb}`)
    return []
  }
  if (o.single && o.refs.length === 1) {
    const r = await act(o.refs[0])
    print(r.id)
    return [{id: r.id, ok: true, status: r.status, error: null}]
  }
  const {fanout} = await import('../services/fanout.js')
  const outcomes = await fanout(o.refs, (ref) => act(ref), {
    concurrency: o.concurrency,
    signal: ctx.signal,
    title: (ref) => `${o.verb} ${ref}`,
    done: (ref, r) => ({title: `${o.verb} ${r.id}: ${r.status ?? 'done'}`}),
  })
  const items = outcomes.map((x) => ({id: x.value?.id ?? x.ref, ok: x.ok, status: x.value?.status ?? null, error: x.error ?? null}))
  if (!o.json) for (const i of items) print(i.ok ? i.id : `${i.id}: FAILED: ${i.error}`)
  failIfAny(items.filter((i) => !i.ok).map((i) => `${i.id}: ${i.error}`), items.length, ctx.signal?.aborted, o.json ? () => print(JSON.stringify(items, null, 2)) : undefined)
  return items
}

/**
 * The VMs a stop/start/clean applies to: the id argument and every --vm, or with --all every VM
 * in `allStatus` (all of them when undefined).
 */
export async function targetRefs(
  ctx: ServiceContext,
  o: {id?: string; vm?: string[]; all?: boolean},
  allStatus?: VmStatus,
): Promise<string[]> {
  const named = [...(o.id ? [o.id] : []), ...(o.vm ?? [])]
  if (!named.length && !o.all) throw usageError('say which VMs: --vm ID (repeatable), an id argument, or --all')
  if (!o.all) return [...new Set(named)]
  const {listVms} = await import('../services/vm-service.js')
  return (await listVms(ctx, allStatus ? {status: allStatus} : {all: true})).map((v) => v.id)
}
