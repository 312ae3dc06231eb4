import {Args} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'
import {targetFlags} from '../../cli/flags.js'
import type {LifecycleItem} from '../../cli/lifecycle-command.js'

export default class VmStart extends AgentCommand<typeof VmStart> {
  static override summary = 'Boot stopped VMs again, with their files intact.'
  static override examples = ['<%= config.bin %> vm start python-1a2b3c4d', '<%= config.bin %> vm start --all']
  static override args = {id: Args.string({description: 'VM id or name (same as --vm).'})}
  static override flags = targetFlags

  async run(): Promise<LifecycleItem[]> {
    const {runLifecycle, targetRefs} = await import('../../cli/lifecycle-command.js')
    const {startVm} = await import('../../services/vm-service.js')
    const ctx = await this.context()
    const refs = await targetRefs(ctx, {id: this.args.id, vm: this.flags.vm, all: this.flags.all}, 'stopped')
    return runLifecycle(ctx, {refs, verb: 'start', concurrency: this.flags.concurrency, json: this.jsonEnabled(), single: !this.flags.all}, async (ref) => {
      const v = await startVm(ctx, ref)
      return {id: v.id, status: v.status}
    }, (s) => this.out(s))
  }
}
