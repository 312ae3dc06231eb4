/**
 * The contract between the `agent` core and runtime plugins.
 *
 * A runtime plugin is an oclif plugin with a hook for the `agent:runtimes` event.
 * The hook returns one declaration or a list of them. Plugins have no runtime npm
 * dependencies: they import this package for types only (and for `defineRuntime`
 * in their tests); the core validates every declaration with `defineRuntime`.
 */

/** The oclif hook event a runtime plugin answers. */
export const RUNTIMES_HOOK = 'agent:runtimes' as const

/** What the core passes to the `agent:runtimes` hook. */
export interface RuntimesHookOptions {
  /** Version of this contract the core speaks. */
  apiVersion: 1
}

/** How a file of a given extension is run. `{file}` is replaced by the guest path of the file. */
export type FileRunCommand = readonly string[]

/** The Debian suites agent builds a base image for, newest first. Recipes start `FROM localhost/agent/debian:<suite>`. */
export const DEBIAN_SUITES = ['trixie', 'bookworm'] as const
export type DebianSuite = (typeof DEBIAN_SUITES)[number]
/** The suite of the first-party recipes, and the one new plugins should use. */
export const DEFAULT_DEBIAN_SUITE: DebianSuite = 'trixie'

/** The name of agent's Debian base image for a suite: `localhost/agent/debian:<suite>`. */
export function debianBaseImage(suite: string = DEFAULT_DEBIAN_SUITE): string {
  return `localhost/agent/debian:${suite}`
}

/** One version of a language, such as Python 3.12. */
export interface RuntimeVersionDeclaration {
  /** Version id as users type it after `@`: `3.13`, `22`. Lower case, `[0-9a-z][0-9a-z._-]*`. */
  id: string
  /** Remote image of this version, pinned to a tag. */
  image: string
  /**
   * Absolute path of this version's offline recipe, where Debian packages it: a Containerfile
   * that starts `FROM localhost/agent/debian:<suite>` for a suite in DEBIAN_SUITES.
   */
  recipe?: string
  /** The version a VM gets when none is asked for (at most one; default: the first listed). */
  default?: boolean
}

export interface RuntimeDeclaration {
  /** Language id: lower case, `[a-z][a-z0-9-]*`. */
  language: string
  /** Other names that select this runtime, such as `javascript` for `node`. */
  aliases?: readonly string[]
  /** A short human description. */
  description?: string
  /**
   * Default remote image, used when nothing local or configured is found. Required unless
   * `versions` is given (then each version names its own, and this must be left out).
   */
  image?: string
  /**
   * Absolute path of the offline recipe: a Containerfile that starts
   * `FROM localhost/agent/debian:<suite>` (the base built from Debian packages; suites in
   * DEBIAN_SUITES). Left out when `versions` is given.
   */
  recipe?: string
  /**
   * The versions a VM may ask for (`--language python@3.12`), newest first. Without this list
   * the runtime has a single, unnamed version: `image` and `recipe`.
   */
  versions?: readonly RuntimeVersionDeclaration[]
  /** The command that `agent vm exec --hello` runs, as an argv array. */
  hello: readonly string[]
  /** The argv that prints the runtime's version. */
  version: readonly string[]
  /** The language's interactive REPL (`agent vm shell ID --repl`), as an argv; left out when it has none. */
  repl?: readonly string[]
  /** File extension (with the dot) to argv. `{file}` stands for the file's guest path. */
  fileRun: Readonly<Record<string, FileRunCommand>>
  /** Extra environment for every command run in a VM of this language. */
  env?: Readonly<Record<string, string>>
  /**
   * When two plugins claim the same language or alias, the preferred one wins
   * instead of the conflict being an error.
   */
  preferred?: boolean
}

/** The hook's return value. */
export type RuntimesHookResult = RuntimeDeclaration | readonly RuntimeDeclaration[]

/** A version that passed validation. */
export interface RuntimeVersion extends RuntimeVersionDeclaration {
  default: boolean
}

/** A declaration that passed validation. */
export interface Runtime extends RuntimeDeclaration {
  aliases: readonly string[]
  env: Readonly<Record<string, string>>
  preferred: boolean
  /** The default version's remote image. */
  image: string
  /** The recipe `agent image build <language>` builds: the offline version's. */
  recipe?: string
  /** Declared versions, newest first; empty for a runtime that declares none. */
  versions: readonly RuntimeVersion[]
  /** Id of the version a VM gets when none is asked for; null when the runtime declares no versions. */
  defaultVersion: string | null
  /**
   * Id of the version `agent image build <language>` builds: the default version when it has a
   * recipe, else the first version that has one; null when there is none (or no versions).
   */
  offlineVersion: string | null
}

export class InvalidRuntimeError extends Error {
  constructor(
    public readonly language: string,
    public readonly problems: readonly string[],
  ) {
    super(`invalid runtime declaration${language ? ` for "${language}"` : ''}: ${problems.join('; ')}`)
    this.name = 'InvalidRuntimeError'
  }
}

const LANGUAGE_RE = /^[a-z][a-z0-9-]{0,31}$/
const EXTENSION_RE = /^\.[A-Za-z0-9]{1,16}$/
const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/
const VERSION_RE = /^[0-9a-z][0-9a-z._-]{0,31}$/
// A loose OCI reference check: registry/path:tag or @digest, no spaces or `..`.
const IMAGE_RE = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/

function isArgv(v: unknown): v is string[] {
  return Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === 'string' && s.length > 0 && !s.includes('\0'))
}

/** True when `ref` looks like an image reference we are willing to hand to buildah. */
export function isValidImageRef(ref: string): boolean {
  return typeof ref === 'string' && ref.length <= 255 && IMAGE_RE.test(ref)
}

/** Validates a declaration and returns it normalised. Throws InvalidRuntimeError listing every problem. */
export function defineRuntime(decl: RuntimeDeclaration): Runtime {
  const problems: string[] = []
  const d = (decl ?? {}) as Partial<RuntimeDeclaration>
  const language = typeof d.language === 'string' ? d.language : ''
  if (!LANGUAGE_RE.test(language)) problems.push(`language must match ${LANGUAGE_RE} (got ${JSON.stringify(d.language)})`)
  const aliases = d.aliases ?? []
  if (!Array.isArray(aliases)) problems.push('aliases must be a list of strings')
  else
    for (const a of aliases)
      if (typeof a !== 'string' || !LANGUAGE_RE.test(a)) problems.push(`alias ${JSON.stringify(a)} must match ${LANGUAGE_RE}`)
      else if (a === language) problems.push(`alias "${a}" repeats the language id`)
  const versions: RuntimeVersion[] = []
  if (d.versions !== undefined) {
    if (!Array.isArray(d.versions) || d.versions.length === 0) problems.push('versions must be a non-empty list of {id, image, recipe?, default?}')
    else {
      if (d.image !== undefined) problems.push('image must be left out when versions are given (each version names its image)')
      if (d.recipe !== undefined) problems.push('recipe must be left out when versions are given (each version names its recipe)')
      for (const v of d.versions as Partial<RuntimeVersionDeclaration>[]) {
        const id = typeof v?.id === 'string' ? v.id : ''
        if (!VERSION_RE.test(id)) problems.push(`version id must match ${VERSION_RE} (got ${JSON.stringify(v?.id)})`)
        else if (versions.some((x) => x.id === id)) problems.push(`version "${id}" is declared twice`)
        if (typeof v?.image !== 'string' || !isValidImageRef(v.image)) problems.push(`version "${id}": image must be an image reference (got ${JSON.stringify(v?.image)})`)
        if (v?.recipe !== undefined && (typeof v.recipe !== 'string' || !v.recipe.startsWith('/')))
          problems.push(`version "${id}": recipe must be an absolute path to a Containerfile`)
        if (v?.default !== undefined && typeof v.default !== 'boolean') problems.push(`version "${id}": default must be a boolean`)
        versions.push(Object.freeze({...(v as RuntimeVersionDeclaration), default: v?.default === true}))
      }
      const defaults = versions.filter((v) => v.default)
      if (defaults.length > 1) problems.push(`only one version may be the default (got ${defaults.map((v) => v.id).join(', ')})`)
      else if (defaults.length === 0 && versions.length > 0) versions[0] = Object.freeze({...versions[0], default: true})
    }
  } else {
    if (typeof d.image !== 'string' || !isValidImageRef(d.image)) problems.push(`image must be an image reference (got ${JSON.stringify(d.image)})`)
    if (d.recipe !== undefined && (typeof d.recipe !== 'string' || !d.recipe.startsWith('/')))
      problems.push('recipe must be an absolute path to a Containerfile')
  }
  if (!isArgv(d.hello)) problems.push('hello must be a non-empty argv array of strings')
  if (!isArgv(d.version)) problems.push('version must be a non-empty argv array of strings')
  if (d.repl !== undefined && !isArgv(d.repl)) problems.push('repl must be a non-empty argv array of strings')
  if (!d.fileRun || typeof d.fileRun !== 'object' || Array.isArray(d.fileRun) || Object.keys(d.fileRun).length === 0)
    problems.push('fileRun must map at least one extension (".py") to an argv')
  else
    for (const [ext, argv] of Object.entries(d.fileRun)) {
      if (!EXTENSION_RE.test(ext)) problems.push(`fileRun extension ${JSON.stringify(ext)} must look like ".py"`)
      if (!isArgv(argv)) problems.push(`fileRun["${ext}"] must be a non-empty argv array`)
      else if (!argv.some((s) => s.includes('{file}'))) problems.push(`fileRun["${ext}"] must use {file}`)
    }
  const env = d.env ?? {}
  if (typeof env !== 'object' || Array.isArray(env)) problems.push('env must be an object of strings')
  else
    for (const [k, v] of Object.entries(env))
      if (!ENV_KEY_RE.test(k) || typeof v !== 'string') problems.push(`env ${JSON.stringify(k)} must be a NAME=string pair`)
  if (d.preferred !== undefined && typeof d.preferred !== 'boolean') problems.push('preferred must be a boolean')
  if (problems.length > 0) throw new InvalidRuntimeError(language, problems)
  const def = versions.find((v) => v.default)
  const offline = def?.recipe ? def : versions.find((v) => v.recipe)
  return Object.freeze({
    ...(d as RuntimeDeclaration),
    aliases: Object.freeze([...aliases]),
    env: Object.freeze({...env}),
    preferred: d.preferred ?? false,
    image: def ? def.image : (d.image as string),
    recipe: def ? offline?.recipe : d.recipe,
    versions: Object.freeze(versions),
    defaultVersion: def?.id ?? null,
    offlineVersion: offline?.id ?? null,
  })
}

/** The declared version `id` of a runtime, if there is one. */
export function findVersion(runtime: Pick<Runtime, 'versions'>, id: string): RuntimeVersion | undefined {
  return runtime.versions.find((v) => v.id === id.toLowerCase())
}

/**
 * The agent Debian base a recipe builds FROM: the first `FROM localhost/agent/debian:<suite>`
 * line's reference and suite (supported or not), or undefined when it uses none.
 */
export function recipeDebianBase(containerfileText: string): {ref: string; suite: string; supported: boolean} | undefined {
  const m = /^\s*FROM\s+(?:--\S+\s+)*localhost\/agent\/debian:(\S+?)(?:\s+AS\s+\S+)?\s*$/im.exec(containerfileText)
  if (!m) return undefined
  return {ref: debianBaseImage(m[1]), suite: m[1], supported: (DEBIAN_SUITES as readonly string[]).includes(m[1])}
}

/** What to change in a recipe that uses a Debian base agent does not build; undefined when it is fine. */
export function recipeSuiteProblem(containerfileText: string, recipePath: string): string | undefined {
  const base = recipeDebianBase(containerfileText)
  if (!base)
    return `recipe ${recipePath} must start FROM localhost/agent/debian:<suite> (${DEBIAN_SUITES.join(' or ')}; new recipes: ${debianBaseImage()})`
  if (!base.supported)
    return `recipe ${recipePath} starts FROM ${base.ref}, a suite agent does not build: change that line to FROM ${debianBaseImage()} (supported suites: ${DEBIAN_SUITES.join(', ')})`
  return undefined
}

/** A file whose extension the runtime has no file-run command for (a user error, not a crash). */
export class FileTypeError extends Error {
  constructor(
    public readonly language: string,
    public readonly extension: string,
    public readonly known: readonly string[],
  ) {
    super(`${language} does not know how to run "${extension}" files (it runs: ${known.join(', ')})`)
    this.name = 'FileTypeError'
  }
}

/** Expands a file-run argv for a guest file path; throws FileTypeError for an unknown extension. */
export function fileRunArgv(runtime: Pick<Runtime, 'fileRun' | 'language'>, guestFile: string): string[] {
  const dot = guestFile.lastIndexOf('.')
  const ext = dot >= 0 ? guestFile.slice(dot) : ''
  const argv = runtime.fileRun[ext]
  if (!argv) {
    const known = Object.keys(runtime.fileRun).join(', ')
    throw new FileTypeError(runtime.language, ext || guestFile, Object.keys(runtime.fileRun))
  }
  return argv.map((s) => s.replaceAll('{file}', guestFile))
}

/**
 * What a plugin's own test should check: the declaration is valid, its recipe exists and
 * builds on one of agent's Debian bases (DEBIAN_SUITES), and every file-run command names the file. Returns problems.
 */
export async function verifyRuntimePlugin(hook: () => Promise<RuntimesHookResult> | RuntimesHookResult): Promise<string[]> {
  const {existsSync, readFileSync} = await import('node:fs')
  const problems: string[] = []
  const decls = ([] as RuntimeDeclaration[]).concat((await hook()) as RuntimeDeclaration | RuntimeDeclaration[])
  if (decls.length === 0) problems.push('the hook returned no runtime')
  for (const decl of decls) {
    let r: Runtime
    try {
      r = defineRuntime(decl)
    } catch (err) {
      problems.push((err as Error).message)
      continue
    }
    const recipes = r.versions.length ? r.versions.filter((v) => v.recipe).map((v) => [`${r.language}@${v.id}`, v.recipe!]) : r.recipe ? [[r.language, r.recipe]] : []
    for (const [who, recipe] of recipes) {
      if (!existsSync(recipe)) problems.push(`${who}: recipe ${recipe} does not exist`)
      else {
        const problem = recipeSuiteProblem(readFileSync(recipe, 'utf8'), recipe)
        if (problem) problems.push(`${who}: ${problem}`)
      }
    }
    for (const ext of Object.keys(r.fileRun))
      if (!fileRunArgv(r, `/in/main${ext}`).includes(`/in/main${ext}`)) problems.push(`${r.language}: fileRun["${ext}"] does not pass the file`)
  }
  return problems
}
