import {Flags} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'
import {LAUNCHER_OPTIONS} from '../../launchers/options.js'
import {DEFAULT_ORDER} from '../../launchers/select.js'
import {cpuFlag} from '../../cli/flags.js'
import {LAUNCHER_NAMES, type VmRecord} from '../../state/vm-record.js'

export default class VmCreate extends AgentCommand<typeof VmCreate> {
  static override summary = 'Create a sandbox VM for a language and boot it.'
  static override description = `Prints the new VM's id (<language>-<8 hex>). The image is, in order: --image; AGENT_IMAGE_<LANGUAGE> or "images" in <state>/config.json; a local localhost/agent/<language> image (agent image build); the runtime plugin's default remote image. The launcher is --launcher, AGENT_LAUNCHER, or the first usable of ${DEFAULT_ORDER.join(', ')} (see agent doctor).`
  static override examples = [
    '<%= config.bin %> vm create --language python',
    '<%= config.bin %> vm create --language python@3.12',
    '<%= config.bin %> vm create --language node --cpu 0.5 --mem 512 --name web-tests',
    '<%= config.bin %> vm create --language python --network allow_all --persist --json',
    '<%= config.bin %> vm create --language python --network allow:pypi.org,files.pythonhosted.org',
    '<%= config.bin %> vm create --language python --network allow_all --allow-host 192.168.1.20:5432 --persist --persist-size 256',
  ]
  static override flags = {
    language: Flags.string({
      char: 'l',
      required: true,
      summary: 'Language of the VM, optionally with a version: python, python@3.12, node@22 (javascript), ruby, golang, or any installed runtime plugin (agent runtimes lists languages and versions).',
    }),
    version: Flags.string({summary: 'Runtime version, as after the @ of --language (python@3.12 is --language python --version 3.12). Default: the runtime\'s default version.'}),
    image: Flags.string({char: 'i', summary: 'Image to boot instead of the resolved one.'}),
    cpu: cpuFlag({default: 1, summary: 'CPUs the VM may use (fractions allowed).'}),
    mem: Flags.integer({default: 256, summary: 'Memory limit in MiB. A command that exceeds it is killed (exit 137).'}),
    disk: Flags.integer({default: 1024, summary: 'Disk the VM may write, in MiB (writes beyond fail with ENOSPC).'}),
    pids: Flags.integer({default: 256, summary: 'Process limit; stops fork bombs.'}),
    network: Flags.string({
      default: 'none',
      summary: 'none: loopback only. allow_all: the public internet only (never private, link-local, metadata or host addresses). allow:LIST: only these CIDRs and domain names (subdomains included), e.g. allow:pypi.org,10.1.2.0/24.',
    }),
    'allow-host': Flags.string({
      multiple: true,
      summary: 'Open a hole through the egress filter to ADDR, ADDR:PORT, CIDR or [IPv6]:PORT, e.g. a database on a private address (repeatable; the host\'s loopback stays closed).',
    }),
    persist: Flags.boolean({summary: 'Mount a persistent file system at /persist that can outlive the VM (clean --keep-persist).'}),
    'persist-size': Flags.integer({summary: 'Size of /persist in MiB (default 1024); writes beyond fail with ENOSPC. A kept /persist keeps its size.'}),
    'persist-from': Flags.string({summary: 'Attach the persist dir kept from this cleaned VM.'}),
    name: Flags.string({char: 'n', summary: 'A unique name usable wherever an id is.'}),
    launcher: Flags.option({
      options: LAUNCHER_NAMES,
      // --runtime was this flag's first name; it keeps working.
      aliases: ['runtime'],
      summary: `Launcher: ${LAUNCHER_NAMES.join(', ')}. Default: AGENT_LAUNCHER, else the first usable (agent doctor says which).`,
    })(),
    // Each launcher's own options, declared by the launcher (launchers/options.ts).
    ...Object.fromEntries(
      LAUNCHER_OPTIONS.map((o) => [
        o.flag,
        o.values ? Flags.option({options: o.values, summary: `${o.launcher} VMs only: ${o.summary}`})() : Flags.string({summary: `${o.launcher} VMs only: ${o.summary}`}),
      ]),
    ),
  }

  async run(): Promise<VmRecord> {
    const {createVm} = await import('../../services/vm-service.js')
    const {parseNetwork} = await import('../../launchers/egress-policy.js')
    const {logger} = await import('../../logging/logger.js')
    const f = this.flags
    const {network, egressAllow} = parseNetwork(f.network)
    const {vm, launcherReason} = await createVm(await this.context(), {
      language: f.language,
      version: f.version,
      image: f.image,
      cpus: f.cpu,
      memoryMib: f.mem,
      diskMib: f.disk,
      pids: f.pids,
      network,
      egressAllow,
      allowHosts: f['allow-host'],
      persist: f.persist,
      persistMib: f['persist-size'],
      persistFrom: f['persist-from'],
      name: f.name,
      launcher: f.launcher,
      launcherOptions: Object.fromEntries(
        LAUNCHER_OPTIONS.map((o) => [o.flag, (f as Record<string, unknown>)[o.flag]]).filter((e): e is [string, string] => typeof e[1] === 'string'),
      ),
    })
    logger().info(`created ${vm.id} with ${vm.launcher} (${launcherReason})`)
    this.out(vm.id)
    return vm
  }
}
