import {Flags} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'
import {languageLabel, networkLabel, VM_STATUSES, type VmRecord} from '../../state/vm-record.js'
import {vmOrigin, type VmOrigin} from '../../state/vm-origin.js'
import {renderTable} from '../../util/table.js'

export default class VmList extends AgentCommand<typeof VmList> {
  static override summary = 'List VMs, with each launcher\'s view of its VMs reconciled into the database.'
  static override description = `By default only running (and creating) VMs are shown, as with \`docker ps\`.
ORIGIN says who made it: cli, api (an \`agent serve\` sandbox), pool (an unclaimed warm pool VM of \`agent serve\`) or mcp.
A VM whose sandbox died shows as stopped; one whose sandbox and root filesystem were removed behind agent's back shows as missing. \`agent vm clean\` handles both.`
  static override examples = ['<%= config.bin %> vm list', '<%= config.bin %> vm list --all', '<%= config.bin %> vm list --status stopped --json']
  static override flags = {
    status: Flags.option({options: VM_STATUSES, summary: 'Only VMs in this state.'})(),
    all: Flags.boolean({char: 'a', summary: 'Show VMs in every state.'}),
  }

  async run(): Promise<(VmRecord & {origin: VmOrigin})[]> {
    const {listVms} = await import('../../services/vm-service.js')
    const vms = (await listVms(await this.context(), {status: this.flags.status, all: this.flags.all})).map((v) => ({...v, origin: vmOrigin(this.paths.vmDir(v.id))}))
    if (!this.jsonEnabled()) {
      if (vms.length === 0) this.out(this.flags.all || this.flags.status ? 'No VMs.' : 'No running VMs (use --all to see every VM).')
      else
        this.out(
          renderTable(
            ['ID', 'NAME', 'LANGUAGE', 'LAUNCHER', 'STATUS', 'ORIGIN', 'CPU', 'MEM', 'NETWORK', 'CREATED'],
            vms.map((v) => [v.id, v.name ?? '', languageLabel(v), v.launcher, v.status, v.origin, String(v.cpus), `${v.memoryMib}M`, networkLabel(v), v.createdAt.toISOString().replace(/\.\d+Z$/, 'Z')]),
          ),
        )
    }
    return vms
  }
}
