import {Args, Flags} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'
import type {CopyResult} from '../../services/vm-copy.js'

export default class VmCp extends AgentCommand<typeof VmCp> {
  static override summary = 'Copy files and directories between the host and a VM (docker cp style).'
  static override description = `One side is a VM path, ID:/path (id or name); the other a host path. Directories are copied whole, with file modes; a source ending in /. copies a directory's contents. Into an existing directory the source keeps its name; otherwise it takes the destination's.
Works on a running VM (through the guest's own tar) and on a stopped one (through its disk). Symlinks in the VM arrive as symlinks and never make agent write outside the destination; symlinks on the host are refused, as --file refuses them. Owners are not copied: files belong to whoever copies them (root in the VM).`
  static override examples = [
    '<%= config.bin %> vm cp ./project python-1a2b3c4d:/work',
    '<%= config.bin %> vm cp python-1a2b3c4d:/out/report.csv .',
    '<%= config.bin %> vm cp my-vm:/root/results/. ./results',
  ]
  static override args = {
    src: Args.string({required: true, description: 'What to copy: a host path, or ID:/path in a VM.'}),
    dest: Args.string({required: true, description: 'Where to: ID:/path in a VM, or a host path.'}),
  }
  static override flags = {
    'max-size': Flags.integer({min: 1, max: 1024 * 1024, default: 1024, summary: 'Refuse (or stop) a copy larger than this many MiB.'}),
    timeout: Flags.integer({min: 1, max: 86_400, default: 600, summary: 'Seconds the guest side of the copy may take (running VMs).'}),
  }

  async run(): Promise<CopyResult> {
    const {copy} = await import('../../services/vm-copy.js')
    const r = await copy(await this.context(), this.args.src, this.args.dest, {maxBytes: this.flags['max-size'] * 1024 * 1024, timeoutSec: this.flags.timeout})
    const {logger} = await import('../../logging/logger.js')
    logger().info(`copied ${r.entries} entries (${r.bytes} bytes of tar) ${r.direction === 'in' ? `into ${r.vm}:${r.target}` : `from ${r.vm} to ${r.target}`} via the ${r.via}`)
    return r
  }
}
