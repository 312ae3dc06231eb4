import {Args, Flags} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'
import type {SnapshotOutcome} from '../../services/vm-snapshot.js'

export default class VmSnapshot extends AgentCommand<typeof VmSnapshot> {
  static override summary = 'Save a VM\'s current filesystem as a local image to start other VMs from.'
  static override description = `The image is the VM's image with one layer on top: everything the VM changed (/out, /tmp, /in and /persist are mounts, not part of it). It is labelled with the source VM, its language and the time, and listed by \`agent image list\`.
A running VM is paused for the copy (its processes keep their state) and runs on after; a stopped VM stays stopped.`
  static override examples = [
    '<%= config.bin %> vm snapshot python-1a2b3c4d --tag localhost/snap/py-deps:1',
    '<%= config.bin %> vm create --language python --image localhost/snap/py-deps:1',
  ]
  static override args = {id: Args.string({required: true, description: 'VM id or name.'})}
  static override flags = {
    tag: Flags.string({required: true, summary: 'Image reference to save it as, such as localhost/snap/name:tag.'}),
  }

  async run(): Promise<SnapshotOutcome> {
    const {snapshotVm} = await import('../../services/vm-snapshot.js')
    const {logger} = await import('../../logging/logger.js')
    const r = await snapshotVm(await this.context(), this.args.id, this.flags.tag)
    logger().info(`${r.vm} ${r.held === 'paused' ? 'was paused for the snapshot and runs on' : 'was not running'}; start a VM from it with: ${r.createCommand}`)
    this.out(r.image)
    return r
  }
}
