import {Args, Flags} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'
import {targetFlags} from '../../cli/flags.js'
import type {LifecycleItem} from '../../cli/lifecycle-command.js'

export default class VmClean extends AgentCommand<typeof VmClean> {
  static override summary = 'Remove VMs completely: sandbox, working container, files, persist dir, and the record.'
  static override description = `Works on VMs in any state, including ones that died, went missing, or were left half-made by a killed agent. With --all it also removes leftovers that have no record at all.`
  static override examples = ['<%= config.bin %> vm clean python-1a2b3c4d', '<%= config.bin %> vm clean --all', '<%= config.bin %> vm clean --vm data-job --keep-persist']
  static override args = {id: Args.string({description: 'VM id or name (same as --vm).'})}
  static override flags = {
    ...targetFlags,
    'keep-persist': Flags.boolean({summary: 'Keep /persist on the host (attach it later with vm create --persist-from ID).'}),
  }

  async run(): Promise<LifecycleItem[]> {
    const {runLifecycle, targetRefs} = await import('../../cli/lifecycle-command.js')
    const {cleanVm, sweepOrphans} = await import('../../services/vm-service.js')
    const {logger} = await import('../../logging/logger.js')
    const ctx = await this.context()
    const refs = await targetRefs(ctx, {id: this.args.id, vm: this.flags.vm, all: this.flags.all})
    const items = await runLifecycle(ctx, {refs, verb: 'clean', concurrency: this.flags.concurrency, json: this.jsonEnabled(), single: !this.flags.all}, async (ref) => {
      const r = await cleanVm(ctx, ref, this.flags['keep-persist'])
      if (r.keptPersist) logger().info(`${r.id}: kept ${r.keptPersist}`)
      return {id: r.id, status: 'removed'}
    }, (s) => this.out(s))
    if (this.flags.all) for (const id of await sweepOrphans(ctx)) logger().info(`removed leftovers of ${id} (no record)`)
    return items
  }
}
