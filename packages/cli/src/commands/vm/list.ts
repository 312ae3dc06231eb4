import {Flags} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'
import {VM_STATUSES} from '../../state/vm-record.js'
import type {ListedVm} from '../../cli/vm-list.js'

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

  async run(): Promise<ListedVm[]> {
    const {listWithOrigin, renderVmList} = await import('../../cli/vm-list.js')
    const vms = await listWithOrigin(await this.context(), {status: this.flags.status, all: this.flags.all})
    this.out(renderVmList(vms, this.flags))
    return vms
  }
}
