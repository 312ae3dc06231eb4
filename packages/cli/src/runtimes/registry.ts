import type {Config, Interfaces} from '@oclif/core'
import {RUNTIMES_HOOK, defineRuntime, findVersion, type Runtime, type RuntimeDeclaration, type RuntimeVersion, type RuntimesHookOptions} from '@agent/runtime-kit'
import {AgentError, errorMessage, usageError} from '../errors.js'

export interface PluginInfo {
  name: string
  version: string
  /** oclif's plugin type: core (shipped with agent), user (installed), link (linked dir). */
  type: string
}

export interface RegisteredRuntime {
  runtime: Runtime
  plugin: PluginInfo
}

/** A runtime with the version asked for: null when none was (the VM then gets the runtime's choice). */
export interface RuntimeSelection extends RegisteredRuntime {
  version: RuntimeVersion | null
}

export interface LanguageRef {
  language: string
  version?: string
}

/**
 * `python@3.12` -> {language: 'python', version: '3.12'}; `python` -> {language: 'python'}.
 * The one parser for `--language`, `agent image build` and E2B template ids. Only the shape is
 * checked here (a usage error for `python@` or `a@b@c`); whether the language and version exist
 * is the registry's business (RuntimeRegistry.select).
 */
export function parseLanguageRef(ref: string): LanguageRef {
  const s = String(ref ?? '').trim()
  const at = s.indexOf('@')
  if (at < 0) return {language: s}
  const language = s.slice(0, at)
  const version = s.slice(at + 1)
  if (!language || !version || version.includes('@'))
    throw usageError(`invalid language ${JSON.stringify(ref)}: expected <language> or <language>@<version>`, 'for example python or python@3.12 (see `agent runtimes` for the versions)')
  return {language, version: version.toLowerCase()}
}

/** `python` or `python@3.12`: how a VM's language and version read in `vm list`. */
export function languageLabel(language: string, version: string | null | undefined): string {
  return version ? `${language}@${version}` : language
}

export interface BrokenPlugin {
  plugin: PluginInfo
  error: string
}

export interface RuntimeConflict {
  /** The language or alias both claim. */
  key: string
  plugins: PluginInfo[]
}

// Installed and linked plugins override the ones shipped with agent, as oclif orders plugins.
const RANK: Record<string, number> = {link: 3, user: 2, dev: 1, core: 1}
const rank = (p: PluginInfo) => RANK[p.type] ?? 0
const label = (p: PluginInfo) => `${p.name}@${p.version}`

/** Languages contributed by plugins through the `agent:runtimes` hook, with conflicts and broken plugins. */
export class RuntimeRegistry {
  private readonly byKey = new Map<string, RegisteredRuntime>()
  readonly conflicts: RuntimeConflict[] = []

  constructor(
    contributions: RegisteredRuntime[],
    readonly broken: BrokenPlugin[],
  ) {
    const claims = new Map<string, RegisteredRuntime[]>()
    for (const c of contributions)
      for (const key of [c.runtime.language, ...c.runtime.aliases]) claims.set(key, [...(claims.get(key) ?? []), c])
    const lost = new Set<RegisteredRuntime>()
    for (const [key, all] of claims) {
      const top = Math.max(...all.map((c) => rank(c.plugin)))
      let best = all.filter((c) => rank(c.plugin) === top)
      if (best.length > 1) {
        const preferred = best.filter((c) => c.runtime.preferred)
        if (preferred.length === 1) best = preferred
      }
      if (best.length > 1) {
        this.conflicts.push({key, plugins: best.map((c) => c.plugin)})
        continue
      }
      this.byKey.set(key, best[0])
      for (const c of all) if (c !== best[0]) lost.add(c)
    }
  }

  /** Each usable runtime once, sorted by language. */
  get runtimes(): RegisteredRuntime[] {
    return [...new Set(this.byKey.values())].sort((a, b) => a.runtime.language.localeCompare(b.runtime.language))
  }

  find(languageOrAlias: string): RegisteredRuntime | undefined {
    return this.byKey.get(languageOrAlias.toLowerCase())
  }

  /**
   * The runtime and version for `python`, `python@3.12` (and/or `version`, from a --version
   * flag): a usage error for an unknown language or version, listing the known ones.
   */
  select(ref: string, version?: string): RuntimeSelection {
    const parsed = parseLanguageRef(ref)
    const flag = version?.trim().toLowerCase()
    if (flag !== undefined && parsed.version !== undefined && flag !== parsed.version)
      throw usageError(`${ref} and --version ${version} ask for different versions`, 'give the version once: --language python@3.12, or --language python --version 3.12')
    if (flag === '') throw usageError('--version must not be empty')
    const wanted = parsed.version ?? flag
    const found = this.require(parsed.language)
    if (wanted === undefined) return {...found, version: null}
    const rt = found.runtime
    const v = findVersion(rt, wanted)
    if (v) return {...found, version: v}
    if (rt.versions.length === 0)
      throw usageError(`the ${rt.language} runtime (${label(found.plugin)}) declares no versions, so "${rt.language}@${wanted}" cannot be chosen`, `use --language ${rt.language}`)
    throw usageError(`unknown ${rt.language} version "${wanted}". Known versions: ${describeVersions(rt)}`, `for example --language ${rt.language}@${rt.defaultVersion}; \`agent runtimes\` lists each version's image`)
  }

  /** The runtime for a language, or a usage error that lists what is available and how to add more. */
  require(languageOrAlias: string): RegisteredRuntime {
    const key = languageOrAlias.toLowerCase()
    const found = this.byKey.get(key)
    if (found) return found
    const clash = this.conflicts.find((c) => c.key === key)
    if (clash) {
      throw new AgentError('conflict', `language "${key}" is claimed by more than one plugin: ${clash.plugins.map(label).join(' and ')}`, {
        hint: 'uninstall one of them (`agent plugins uninstall NAME`), or mark one `preferred: true` in its runtime declaration',
      })
    }
    const names = this.runtimes.map((r) => [r.runtime.language, ...r.runtime.aliases].join('|')).join(', ')
    const broken = this.broken.length ? `; broken plugins: ${this.broken.map((b) => label(b.plugin)).join(', ')}` : ''
    throw new AgentError('usage', `unknown language "${languageOrAlias}". Available: ${names || 'none'}${broken}`, {
      hint: 'add a language with `agent plugins install <runtime-plugin>` (see `agent runtimes`)',
    })
  }
}

/** `3.13 (default), 3.12 (image only), 3.11`: a runtime's versions for messages. */
export function describeVersions(rt: Runtime): string {
  return rt.versions
    .map((v) => {
      const notes = [v.default ? 'default' : '', v.recipe ? '' : 'image only'].filter(Boolean)
      return notes.length ? `${v.id} (${notes.join(', ')})` : v.id
    })
    .join(', ')
}

function info(p: Interfaces.Plugin): PluginInfo {
  return {name: p.name, version: p.version, type: p.type}
}

/** Gathers runtime declarations from every plugin's `agent:runtimes` hook. A throwing hook marks its plugin broken. */
export async function loadRuntimes(config: Config): Promise<RuntimeRegistry> {
  const opts: RuntimesHookOptions = {apiVersion: 1}
  const res = await config.runHook(RUNTIMES_HOOK as never, opts as never, 10_000, true)
  return registryFromHook(
    res.successes.map((s) => ({plugin: info(s.plugin), result: s.result})),
    res.failures.map((f) => ({plugin: info(f.plugin), error: f.error})),
  )
}

/** The registry from what each plugin's hook returned (or threw); a bad declaration marks its plugin broken. */
export function registryFromHook(successes: readonly {plugin: PluginInfo; result: unknown}[], failures: readonly {plugin: PluginInfo; error: unknown}[]): RuntimeRegistry {
  const contributions: RegisteredRuntime[] = []
  const broken: BrokenPlugin[] = failures.map((f) => ({plugin: f.plugin, error: errorMessage(f.error)}))
  for (const s of successes) {
    const decls = ([] as unknown[]).concat(s.result ?? [])
    try {
      const defined = decls.map((d) => defineRuntime(d as RuntimeDeclaration))
      contributions.push(...defined.map((runtime) => ({runtime, plugin: s.plugin})))
    } catch (err) {
      broken.push({plugin: s.plugin, error: errorMessage(err)})
    }
  }
  return new RuntimeRegistry(contributions, broken)
}

export {label as pluginLabel}
