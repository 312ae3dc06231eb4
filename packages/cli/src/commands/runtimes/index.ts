import {AgentCommand} from '../../base-command.js'

interface RuntimeRow {
  language: string
  aliases: string[]
  image: string
  recipe: string | null
  hello: string[]
  fileRun: Record<string, readonly string[]>
  plugin: string
  pluginType: string
}

export default class Runtimes extends AgentCommand<typeof Runtimes> {
  static override summary = 'List the languages that installed runtime plugins provide.'
  static override description = `Each language comes from an oclif plugin answering the agent:runtimes hook. Add one with \`agent plugins install <plugin>\` (or \`agent plugins link <dir>\`); remove it with \`agent plugins uninstall\`. An installed plugin overrides a built-in one for the same language. Broken plugins and conflicting claims are listed too. Write your own with \`agent runtimes init <language>\`.`
  static override examples = ['<%= config.bin %> runtimes', '<%= config.bin %> runtimes --json']

  async run(): Promise<{runtimes: RuntimeRow[]; broken: Array<{plugin: string; error: string}>; conflicts: Array<{language: string; plugins: string[]}>}> {
    const {loadRuntimes, pluginLabel} = await import('../../runtimes/registry.js')
    const {renderTable} = await import('../../util/table.js')
    const reg = await loadRuntimes(this.config)
    const runtimes = reg.runtimes.map(({runtime: r, plugin}) => ({
      language: r.language,
      aliases: [...r.aliases],
      image: r.image,
      recipe: r.recipe ?? null,
      hello: [...r.hello],
      fileRun: {...r.fileRun},
      plugin: pluginLabel(plugin),
      pluginType: plugin.type,
    }))
    const broken = reg.broken.map((b) => ({plugin: pluginLabel(b.plugin), error: b.error}))
    const conflicts = reg.conflicts.map((c) => ({language: c.key, plugins: c.plugins.map(pluginLabel)}))
    this.out(
      renderTable(
        ['LANGUAGE', 'ALIASES', 'IMAGE', 'RUNS', 'PLUGIN', 'RECIPE'],
        runtimes.map((r) => [r.language, r.aliases.join(',') || '-', r.image, Object.keys(r.fileRun).join(','), `${r.plugin} (${r.pluginType})`, r.recipe ?? '-']),
      ),
    )
    for (const c of conflicts) this.out(`CONFLICT: "${c.language}" is claimed by ${c.plugins.join(' and ')}; mark one preferred or uninstall one`)
    for (const b of broken) this.out(`BROKEN: ${b.plugin}: ${b.error}`)
    return {runtimes, broken, conflicts}
  }
}
