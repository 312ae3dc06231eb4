import {Args} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'
import {targetFlags} from '../../cli/flags.js'
import type {LifecycleItem} from '../../cli/lifecycle-command.js'

export default class VmStop extends AgentCommand<typeof VmStop> {
  static override summary = 'Stop VMs: end the sandbox, keep its files (agent vm start boots it again).'
  static override examples = ['<%= config.bin %> vm stop python-1a2b3c4d', '<%= config.bin %> vm stop --vm a --vm b', '<%= config.bin %> vm stop --all']
  static override args = {id: Args.string({description: 'VM id or name (same as --vm).'})}
  static override flags = targetFlags

  async run(): Promise<LifecycleItem[]> {
    const {runLifecycle, targetRefs} = await import('../../cli/lifecycle-command.js')
    const {stopVm} = await import('../../services/vm-service.js')
    const ctx = await this.context()
    const refs = await targetRefs(ctx, {id: this.args.id, vm: this.flags.vm, all: this.flags.all}, 'running')
    return runLifecycle(ctx, {refs, verb: 'stop', concurrency: this.flags.concurrency, json: this.jsonEnabled(), single: !this.flags.all}, async (ref) => {
      const v = await stopVm(ctx, ref)
      return {id: v.id, status: v.status}
    }, (s) => this.out(s))
  }
}
