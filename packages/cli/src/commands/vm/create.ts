import {Flags} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'
import {cpuFlag} from '../../cli/flags.js'
import {NETWORK_MODES, LAUNCHER_NAMES, type VmRecord} from '../../state/vm-record.js'

export default class VmCreate extends AgentCommand<typeof VmCreate> {
  static override summary = 'Create a sandbox VM for a language and boot it.'
  static override description = `Prints the new VM's id (<language>-<8 hex>). The image is, in order: --image; AGENT_IMAGE_<LANGUAGE> or "images" in <state>/config.json; a local localhost/agent/<language> image (agent image build); the runtime plugin's default remote image. The launcher is --runtime, AGENT_RUNTIME, or the first usable of krunvm, gvisor, runc (see agent doctor).`
  static override examples = [
    '<%= config.bin %> vm create --language python',
    '<%= config.bin %> vm create --language node --cpu 0.5 --mem 512 --name web-tests',
    '<%= config.bin %> vm create --language python --network allow_all --persist --json',
  ]
  static override flags = {
    language: Flags.string({char: 'l', required: true, summary: 'Language of the VM: python, node (javascript), ruby, golang, or any installed runtime plugin (agent runtimes).'}),
    image: Flags.string({char: 'i', summary: 'Image to boot instead of the resolved one.'}),
    cpu: cpuFlag({default: 1, summary: 'CPUs the VM may use (fractions allowed).'}),
    mem: Flags.integer({default: 256, summary: 'Memory limit in MiB. A command that exceeds it is killed (exit 137).'}),
    disk: Flags.integer({default: 1024, summary: 'Disk the VM may write, in MiB (writes beyond fail with ENOSPC).'}),
    pids: Flags.integer({default: 256, summary: 'Process limit; stops fork bombs.'}),
    network: Flags.option({options: NETWORK_MODES, default: 'none' as const, summary: 'none: loopback only. allow_all: outbound through user-mode networking, never the host\'s loopback.'})(),
    persist: Flags.boolean({summary: 'Mount a persistent dir at /persist that can outlive the VM (clean --keep-persist).'}),
    'persist-from': Flags.string({summary: 'Attach the persist dir kept from this cleaned VM.'}),
    name: Flags.string({char: 'n', summary: 'A unique name usable wherever an id is.'}),
    runtime: Flags.option({options: LAUNCHER_NAMES, env: 'AGENT_RUNTIME', summary: 'Launcher: krunvm, gvisor or runc.'})(),
  }

  async run(): Promise<VmRecord> {
    const {createVm} = await import('../../services/vm-service.js')
    const {logger} = await import('../../logging/logger.js')
    const f = this.flags
    const {vm, launcherReason} = await createVm(await this.context(), {
      language: f.language,
      image: f.image,
      cpus: f.cpu,
      memoryMib: f.mem,
      diskMib: f.disk,
      pids: f.pids,
      network: f.network,
      persist: f.persist,
      persistFrom: f['persist-from'],
      name: f.name,
      runtime: f.runtime,
    })
    logger().info(`created ${vm.id} with ${vm.launcher} (${launcherReason})`)
    this.out(vm.id)
    return vm
  }
}
