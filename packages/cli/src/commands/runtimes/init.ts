import {Args, Flags} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'

export default class RuntimesInit extends AgentCommand<typeof RuntimesInit> {
  static override summary = 'Write a working runtime plugin skeleton for a new language.'
  static override description = `The plugin is plain JavaScript with no npm dependencies, so it installs offline. Edit hooks/runtimes.js, then \`agent plugins link <dir>\` to try it, or \`npm pack\` and \`agent plugins install file:<tarball>\`. See plugins/README.md.`
  static override examples = [
    '<%= config.bin %> runtimes init perl --command perl --extension .pl --image docker.io/library/perl:5-slim',
    '<%= config.bin %> runtimes init lua --command lua5.4 --extension .lua --apt-package lua5.4 --image docker.io/nickblah/lua:5.4',
  ]
  static override args = {language: Args.string({required: true, description: 'Language id, e.g. perl.'})}
  static override flags = {
    dir: Flags.string({summary: 'Where to write the plugin (default ./agent-runtime-<language>).'}),
    command: Flags.string({required: true, summary: 'Program that runs a source file, e.g. perl.'}),
    extension: Flags.string({required: true, summary: 'Source file extension, e.g. .pl.'}),
    image: Flags.string({required: true, summary: 'Default remote image for the language.'}),
    'apt-package': Flags.string({multiple: true, summary: 'Debian package the offline recipe installs (repeatable).'}),
  }

  async run(): Promise<{dir: string; files: string[]}> {
    const {scaffoldRuntime} = await import('../../services/runtime-scaffold.js')
    const res = scaffoldRuntime({
      language: this.args.language,
      dir: this.flags.dir ?? `agent-runtime-${this.args.language}`,
      image: this.flags.image,
      command: this.flags.command,
      extension: this.flags.extension,
      aptPackages: this.flags['apt-package'] ?? [],
    })
    this.out(`wrote ${res.dir}: ${res.files.join(', ')}`)
    this.out(`next: agent plugins link ${res.dir} && agent runtimes`)
    return res
  }
}
