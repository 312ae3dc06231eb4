import type {ServiceContext} from '../services/context.js'
import {listVms} from '../services/vm-service.js'
import {languageLabel, networkLabel, type VmRecord} from '../state/vm-record.js'
import {vmOrigin, type VmOrigin} from '../state/vm-origin.js'
import {renderTable} from '../util/table.js'

export type ListedVm = VmRecord & {origin: VmOrigin}

/** `vm list`'s rows (the command and agent serve's route alike). */
export async function listWithOrigin(ctx: ServiceContext, o: {status?: VmRecord['status']; all?: boolean}): Promise<ListedVm[]> {
  return (await listVms(ctx, {status: o.status, all: o.all})).map((v) => ({...v, origin: vmOrigin(ctx.paths.vmDir(v.id))}))
}

/** `vm list`'s text (without --json), one line break at the end. */
export function renderVmList(vms: readonly ListedVm[], o: {status?: string; all?: boolean}): string {
  if (vms.length === 0) return `${o.all || o.status ? 'No VMs.' : 'No running VMs (use --all to see every VM).'}\n`
  const table = renderTable(
    ['ID', 'NAME', 'LANGUAGE', 'LAUNCHER', 'STATUS', 'ORIGIN', 'CPU', 'MEM', 'NETWORK', 'CREATED'],
    vms.map((v) => [v.id, v.name ?? '', languageLabel(v), v.launcher, v.status, v.origin, String(v.cpus), `${v.memoryMib}M`, networkLabel(v), v.createdAt.toISOString().replace(/\.\d+Z$/, 'Z')]),
  )
  return table.endsWith('\n') ? table : `${table}\n`
}
