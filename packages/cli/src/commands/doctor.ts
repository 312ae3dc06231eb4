import {AgentCommand} from '../base-command.js'
import {DEFAULT_ORDER} from '../launchers/select.js'
import type {DoctorReport} from '../services/doctor.js'

export default class Doctor extends AgentCommand<typeof Doctor> {
  static override summary = "Check this host's prerequisites for each launcher and say which one is the default."
  static override description = `Each launcher checks what it needs: its binary and version (and what that version allows), KVM or macOS Hypervisor.framework, cgroups (v1/v2 with the memory and pids controllers), slirp4netns. Also checked: the state dir is writable, buildah is installed and its storage works. Every missing piece comes with a fix.
The default launcher is the first usable of ${DEFAULT_ORDER.join(', ')} (--launcher or AGENT_LAUNCHER overrides it).
Exits 0 when at least one launcher is usable, else 5.`
  static override examples = ['<%= config.bin %> doctor', '<%= config.bin %> doctor --json']

  async run(): Promise<DoctorReport> {
    const {runDoctor, renderDoctor, doctorFailure} = await import('../services/doctor.js')
    const report = await runDoctor(await this.context())
    if (!this.jsonEnabled()) {
      this.out(`State dir: ${report.stateDir}`)
      this.out('')
      for (const line of renderDoctor(report)) this.out(line)
    }
    // With --json the error document carries every launcher's reason in its message.
    if (!report.ok) throw doctorFailure(report)
    return report
  }
}
