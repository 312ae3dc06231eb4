import {Args} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'
import type {VmInspection} from '../../services/vm-inspect.js'

export default class VmInspect extends AgentCommand<typeof VmInspect> {
  static override summary = 'Show a VM\'s record, limits, image and launcher, and what it uses now.'
  static override description = `Memory, CPU time and process count are read from the VM's cgroup by its launcher; disk used is that of its --disk. A value the launcher cannot read is shown as unknown, with the reason (in --json: absent, with the reason under usage.unknown).`
  static override examples = ['<%= config.bin %> vm inspect python-1a2b3c4d', '<%= config.bin %> vm inspect my-vm --json']
  static override args = {id: Args.string({required: true, description: 'VM id or name.'})}

  async run(): Promise<VmInspection> {
    const {inspectVm, renderInspection} = await import('../../services/vm-inspect.js')
    const i = await inspectVm(await this.context(), this.args.id)
    this.out(renderInspection(i))
    return i
  }
}
