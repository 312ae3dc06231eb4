import {Flags} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'
import {commandAfterDashes, execFlags} from '../../cli/flags.js'
import type {ExecJson} from '../../cli/exec-command.js'

export default class VmExec extends AgentCommand<typeof VmExec> {
  static override summary = 'Run a command, or the language\'s hello, in one or many running VMs.'
  static override description = `The command is an argv after -- (run as is, no shell: \`-- python3 -c 'print(1)'\`), or a shell command line with --cmd (run by /bin/sh -c), or --hello.
With one VM, output streams live, stdin is passed through when it is not a terminal (with -i always), and agent exits with the command's exit code (124 on timeout, 137 when out of memory).
-it runs the command interactively on a terminal in the VM, as docker exec -it does: keys (Ctrl-C, Ctrl-D too) go to the command, the terminal's size follows yours, and there is no timeout unless --timeout is given. -t needs stdin to be a terminal (exit 2 otherwise). See also \`agent vm shell\`.
With several VMs (--vm repeated, or --all running VMs) the commands run concurrently with progress on stderr; each VM's output is printed, grouped, at the end, and the exit code is 0 only if every VM succeeded (6 otherwise, naming each failure).
With --json, stdout is a list with one object per VM: id, exitCode, stdout, stderr (each capped at 1 MiB, flagged when truncated), durationMs, error.`
  static override examples = [
    '<%= config.bin %> vm exec --vm python-1a2b3c4d -- python3 -c \'print(6*7)\'',
    '<%= config.bin %> vm exec --vm python-1a2b3c4d --cmd "python3 -V | tr a-z A-Z"',
    'echo hi | <%= config.bin %> vm exec --vm my-vm -- cat',
    '<%= config.bin %> vm exec -it --vm my-vm -- bash',
    '<%= config.bin %> vm exec --hello --all',
    '<%= config.bin %> vm exec --vm a --vm b --json -- uname -a',
  ]
  // The command after `--` is free-form.
  static override strict = false
  static override flags = {
    ...execFlags,
    cmd: execFlags.cmd,
    hello: Flags.boolean({summary: 'Run each VM\'s own language hello (from its runtime plugin).', exclusive: ['cmd']}),
    interactive: Flags.boolean({char: 'i', summary: 'Keep stdin open and stream it to the command, even from a terminal.'}),
    tty: Flags.boolean({char: 't', summary: 'Run the command on a terminal (PTY) in the VM; with -i, an interactive session. Needs stdin to be a terminal.'}),
    timeout: Flags.integer({min: 1, max: 86_400, summary: 'Seconds before the command and all its children are killed (exit 124). Default 30; with -i or -t, none.'}),
  }

  async run(): Promise<ExecJson[]> {
    const {runExecCommand} = await import('../../cli/exec-command.js')
    const {usageError} = await import('../../errors.js')
    const argv = commandAfterDashes(await this.parse(VmExec), this.argv)
    if (!this.flags.cmd && !this.flags.hello && !argv.length) throw usageError('give the command after -- (vm exec --vm ID -- python3 -V), --cmd "<shell command>", or --hello')
    const interactive = this.flags.interactive || this.flags.tty
    const timeout = this.flags.timeout ?? (interactive ? 0 : 30)
    return runExecCommand(await this.context(), {...this.flags, timeout, argv, json: this.jsonEnabled()}, (s) => process.stdout.write(`${s}\n`))
  }
}
