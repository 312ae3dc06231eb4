import {Args, Flags} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'
import {execFlags} from '../../cli/flags.js'
import type {ExecJson} from '../../cli/exec-command.js'

export default class VmShell extends AgentCommand<typeof VmShell> {
  static override summary = 'Open an interactive shell, or the language\'s REPL, in a running VM.'
  static override description = `Runs the image's shell (bash where the image has it, else sh), or with --repl the language's REPL as its runtime plugin names it (python3, node, irb), on a terminal in the VM: the same as \`agent vm exec -it --vm ID -- bash\`.
Keys (Ctrl-C, Ctrl-D too) go to the guest, the terminal's size follows yours, and agent exits with the shell's exit code. There is no timeout unless --timeout is given. Needs a terminal (exit 2 when stdin is not one).`
  static override examples = ['<%= config.bin %> vm shell python-1a2b3c4d', '<%= config.bin %> vm shell my-vm --repl', '<%= config.bin %> vm shell my-vm --env DEBUG=1 --workdir /out']
  static override args = {id: Args.string({required: true, description: 'VM id or name.'})}
  static override flags = {
    repl: Flags.boolean({summary: 'The language\'s REPL (from its runtime plugin) instead of the shell.'}),
    env: execFlags.env,
    workdir: execFlags.workdir,
    timeout: Flags.integer({min: 1, max: 86_400, summary: 'Seconds before the session and all its processes are killed (exit 124). Default: none.'}),
  }

  async run(): Promise<ExecJson> {
    const {runExecCommand} = await import('../../cli/exec-command.js')
    const [doc] = await runExecCommand(
      await this.context(),
      {vm: [this.args.id], shell: this.flags.repl ? 'repl' : 'shell', interactive: true, tty: true, env: this.flags.env, workdir: this.flags.workdir, timeout: this.flags.timeout ?? 0, json: false},
      (s) => process.stdout.write(`${s}\n`),
    )
    return doc!
  }
}
