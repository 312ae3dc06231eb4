import {AgentCommand} from '../base-command.js'
import type {DoctorReport} from '../services/doctor.js'

export default class Doctor extends AgentCommand<typeof Doctor> {
  static override summary = "Check this host's prerequisites for each launcher and say which one is the default."
  static override description = `Checks runsc, runc, krunvm, buildah and slirp4netns (found and their versions), KVM or macOS Hypervisor.framework, cgroups (v1/v2 with the memory and pids controllers), that the state dir is writable and that buildah storage works, and prints a fix for each missing piece.
The default launcher is krunvm when usable, else gvisor, else runc.
Exits 0 when at least one launcher is usable, else 5.`
  static override examples = ['<%= config.bin %> doctor', '<%= config.bin %> doctor --json']

  async run(): Promise<DoctorReport> {
    const {runDoctor, renderDoctor, doctorFailure, hostLaunchers} = await import('../services/doctor.js')
    const report = await runDoctor({paths: this.paths, launchers: await hostLaunchers()})
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
