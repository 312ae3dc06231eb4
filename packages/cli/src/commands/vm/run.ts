import {AgentCommand} from '../../base-command.js'
import {commandAfterDashes, execFlags} from '../../cli/flags.js'
import type {ExecJson} from '../../cli/exec-command.js'

export default class VmRun extends AgentCommand<typeof VmRun> {
  static override summary = 'Run code in a VM: copy files into /in and run them with the language\'s convention, or run a command.'
  static override description = `--file copies host files into /in (base name only; directories, symlinks and odd names are refused). Without a command, the last --file is run the runtime's way: .py with python3, .js/.mjs with node, .rb with ruby, .go with go run (see agent runtimes). A command is an argv after -- (no shell) or a shell command line with --cmd.
Output streams live and agent exits with the program's exit code; --timeout kills it and all its children (exit 124). With several --vm, runs concurrently like vm exec.`
  static override examples = [
    '<%= config.bin %> vm run --vm python-1a2b3c4d --file ./main.py',
    '<%= config.bin %> vm run --vm go-vm --file main.go --timeout 120',
    '<%= config.bin %> vm run --vm py --file data.csv --file main.py -- python3 /in/main.py /in/data.csv',
    '<%= config.bin %> vm run --vm py --file data.csv --file main.py --cmd "python3 /in/main.py /in/data.csv" --out ./results',
  ]
  // The command after `--` is free-form.
  static override strict = false
  static override flags = execFlags

  async run(): Promise<ExecJson[]> {
    const {runExecCommand} = await import('../../cli/exec-command.js')
    const {usageError} = await import('../../errors.js')
    const argv = commandAfterDashes(await this.parse(VmRun), this.argv)
    const command = Boolean(this.flags.cmd) || argv.length > 0
    if (!command && !this.flags.file?.length) throw usageError('give --file <program> (run by the language\'s convention), a command after --, or --cmd "<shell command>"')
    const file = this.flags.file ?? []
    // The program to run is the last file when there is no command: `--file data.csv --file main.py` runs main.py.
    const ordered = command ? file : [...file.slice(-1), ...file.slice(0, -1)]
    return runExecCommand(await this.context(), {...this.flags, argv, file: ordered, json: this.jsonEnabled()}, (s) => process.stdout.write(`${s}\n`))
  }
}
