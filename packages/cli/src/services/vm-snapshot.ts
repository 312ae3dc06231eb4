/**
 * `agent vm snapshot`: a VM's current filesystem as a local image that `vm create --image`
 * boots from and `image list` shows. The launcher does the work (launcher.snapshot): it knows
 * where the VM's changes are and how to hold a running VM still.
 */
import {conflict} from '../errors.js'
import {checkImageRef} from '../images/resolve.js'
import type {SnapshotResult} from '../launchers/launcher.js'
import {launcher as launcherByName, unusable} from '../launchers/select.js'
import {languageLabel} from '../state/vm-record.js'
import {launchContext, type ServiceContext} from './context.js'
import {resolveVm} from './vm-service.js'

/** Labels on every snapshot image. */
export const SNAPSHOT_LABELS = {vm: 'agent.snapshot.vm', language: 'agent.snapshot.language', created: 'agent.snapshot.created', base: 'org.opencontainers.image.base.name'} as const

export interface SnapshotOutcome extends SnapshotResult {
  vm: string
  language: string
  labels: Record<string, string>
  /** How to start a VM from it. */
  createCommand: string
}

export async function snapshotVm(ctx: ServiceContext, ref: string, tag: string, now = new Date()): Promise<SnapshotOutcome> {
  checkImageRef(tag, '--tag')
  const vm = await resolveVm(ctx, ref)
  if (vm.status !== 'running' && vm.status !== 'stopped') {
    throw conflict(`VM ${vm.id} is ${vm.status}: only a running or stopped VM can be snapshotted`, vm.status === 'failed' || vm.status === 'missing' ? `clean it with \`agent vm clean ${vm.id}\`` : 'wait for it to finish')
  }
  const l = await launcherByName(vm.launcher)
  const a = await l.available()
  if (!a.ok) throw unusable(l.name, a)
  const labels = {
    [SNAPSHOT_LABELS.vm]: vm.id,
    [SNAPSHOT_LABELS.language]: languageLabel(vm),
    [SNAPSHOT_LABELS.created]: now.toISOString(),
    [SNAPSHOT_LABELS.base]: vm.image,
  }
  const r = await l.snapshot(vm, launchContext(ctx, vm, {}), {tag, labels})
  return {...r, vm: vm.id, language: languageLabel(vm), labels, createCommand: `agent vm create --language ${languageLabel(vm)} --image ${r.image}`}
}
