import {AgentCommand} from '../../base-command.js'

interface VersionRow {
  id: string
  image: string
  recipe: string | null
  default: boolean
  /** True for the version `agent image build <language>` builds. */
  offline: boolean
}

interface RuntimeRow {
  language: string
  aliases: string[]
  /** The default version's remote image. */
  image: string
  /** The recipe `agent image build <language>` builds. */
  recipe: string | null
  /** Declared versions, newest first ([] when the runtime declares none). */
  versions: VersionRow[]
  defaultVersion: string | null
  hello: string[]
  fileRun: Record<string, readonly string[]>
  plugin: string
  pluginType: string
}

export default class Runtimes extends AgentCommand<typeof Runtimes> {
  static override summary = 'List the languages that installed runtime plugins provide.'
  static override description = `Each language comes from an oclif plugin answering the agent:runtimes hook. Add one with \`agent plugins install <plugin>\` (or \`agent plugins link <dir>\`); remove it with \`agent plugins uninstall\`. An installed plugin overrides a built-in one for the same language. A runtime may declare several versions (VERSIONS; pick one with \`--language python@3.12\`). Broken plugins and conflicting claims are listed too. Write your own with \`agent runtimes init <language>\`.`
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
      versions: r.versions.map((v) => ({id: v.id, image: v.image, recipe: v.recipe ?? null, default: v.default, offline: v.id === r.offlineVersion})),
      defaultVersion: r.defaultVersion,
      hello: [...r.hello],
      fileRun: {...r.fileRun},
      plugin: pluginLabel(plugin),
      pluginType: plugin.type,
    }))
    const broken = reg.broken.map((b) => ({plugin: pluginLabel(b.plugin), error: b.error}))
    const conflicts = reg.conflicts.map((c) => ({language: c.key, plugins: c.plugins.map(pluginLabel)}))
    this.out(
      renderTable(
        ['LANGUAGE', 'ALIASES', 'VERSIONS', 'IMAGE', 'RUNS', 'PLUGIN', 'RECIPE'],
        runtimes.map((r) => [
          r.language,
          r.aliases.join(',') || '-',
          r.versions.map((v) => `${v.id}${v.default ? '*' : ''}${v.recipe ? '' : '^'}`).join(',') || '-',
          r.image,
          Object.keys(r.fileRun).join(','),
          `${r.plugin} (${r.pluginType})`,
          r.recipe ?? '-',
        ]),
      ),
    )
    if (runtimes.some((r) => r.versions.length > 0))
      this.out('VERSIONS: * the default (IMAGE is its image), ^ image only (no offline recipe). Pick one with --language <language>@<version>; RECIPE is what `agent image build <language>` builds.')
    for (const c of conflicts) this.out(`CONFLICT: "${c.language}" is claimed by ${c.plugins.join(' and ')}; mark one preferred or uninstall one`)
    for (const b of broken) this.out(`BROKEN: ${b.plugin}: ${b.error}`)
    return {runtimes, broken, conflicts}
  }
}
