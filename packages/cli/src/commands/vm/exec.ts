import {Flags} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'
import {commandAfterDashes, execFlags} from '../../cli/flags.js'
import type {ExecJson} from '../../cli/exec-command.js'

export default class VmExec extends AgentCommand<typeof VmExec> {
  static override summary = 'Run a command, or the language\'s hello, in one or many running VMs.'
  static override description = `The command is an argv after -- (run as is, no shell: \`-- python3 -c 'print(1)'\`), or a shell command line with --cmd (run by /bin/sh -c), or --hello.
With one VM, output streams live, stdin is passed through, and agent exits with the command's exit code (124 on timeout, 137 when out of memory).
With several VMs (--vm repeated, or --all running VMs) the commands run concurrently with progress on stderr; each VM's output is printed, grouped, at the end, and the exit code is 0 only if every VM succeeded (6 otherwise, naming each failure).
With --json, stdout is a list with one object per VM: id, exitCode, stdout, stderr (each capped at 1 MiB, flagged when truncated), durationMs, error.`
  static override examples = [
    '<%= config.bin %> vm exec --vm python-1a2b3c4d -- python3 -c \'print(6*7)\'',
    '<%= config.bin %> vm exec --vm python-1a2b3c4d --cmd "python3 -V | tr a-z A-Z"',
    'echo hi | <%= config.bin %> vm exec --vm my-vm -- cat',
    '<%= config.bin %> vm exec --hello --all',
    '<%= config.bin %> vm exec --vm a --vm b --json -- uname -a',
  ]
  // The command after `--` is free-form.
  static override strict = false
  static override flags = {
    ...execFlags,
    cmd: execFlags.cmd,
    hello: Flags.boolean({summary: 'Run each VM\'s own language hello (from its runtime plugin).', exclusive: ['cmd']}),
  }

  async run(): Promise<ExecJson[]> {
    const {runExecCommand} = await import('../../cli/exec-command.js')
    const {usageError} = await import('../../errors.js')
    const argv = commandAfterDashes(await this.parse(VmExec), this.argv)
    if (!this.flags.cmd && !this.flags.hello && !argv.length) throw usageError('give the command after -- (vm exec --vm ID -- python3 -V), --cmd "<shell command>", or --hello')
    return runExecCommand(await this.context(), {...this.flags, argv, json: this.jsonEnabled()}, (s) => process.stdout.write(`${s}\n`))
  }
}
