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

export interface RuntimeDeclaration {
  /** Language id: lower case, `[a-z][a-z0-9-]*`. */
  language: string
  /** Other names that select this runtime, such as `javascript` for `node`. */
  aliases?: readonly string[]
  /** A short human description. */
  description?: string
  /** Default remote image, used when nothing local or configured is found. */
  image: string
  /**
   * Absolute path of the offline recipe: a Containerfile that starts
   * `FROM localhost/agent/debian:bookworm` (the base built from Debian packages).
   */
  recipe?: string
  /** The command that `agent vm exec --hello` runs, as an argv array. */
  hello: readonly string[]
  /** The argv that prints the runtime's version. */
  version: readonly string[]
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

/** A declaration that passed validation. */
export interface Runtime extends RuntimeDeclaration {
  aliases: readonly string[]
  env: Readonly<Record<string, string>>
  preferred: boolean
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
  if (typeof d.image !== 'string' || !isValidImageRef(d.image)) problems.push(`image must be an image reference (got ${JSON.stringify(d.image)})`)
  if (d.recipe !== undefined && (typeof d.recipe !== 'string' || !d.recipe.startsWith('/')))
    problems.push('recipe must be an absolute path to a Containerfile')
  if (!isArgv(d.hello)) problems.push('hello must be a non-empty argv array of strings')
  if (!isArgv(d.version)) problems.push('version must be a non-empty argv array of strings')
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
  return Object.freeze({
    ...(d as RuntimeDeclaration),
    aliases: Object.freeze([...aliases]),
    env: Object.freeze({...env}),
    preferred: d.preferred ?? false,
  })
}

/** Expands a file-run argv for a guest file path. */
export function fileRunArgv(runtime: Pick<Runtime, 'fileRun' | 'language'>, guestFile: string): string[] {
  const dot = guestFile.lastIndexOf('.')
  const ext = dot >= 0 ? guestFile.slice(dot) : ''
  const argv = runtime.fileRun[ext]
  if (!argv) {
    const known = Object.keys(runtime.fileRun).join(', ')
    throw new Error(`${runtime.language} does not know how to run "${ext || guestFile}" files (it runs: ${known})`)
  }
  return argv.map((s) => s.replaceAll('{file}', guestFile))
}

/**
 * What a plugin's own test should check: the declaration is valid, its recipe exists and
 * builds on agent's Debian base, and every file-run command names the file. Returns problems.
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
    if (r.recipe) {
      if (!existsSync(r.recipe)) problems.push(`${r.language}: recipe ${r.recipe} does not exist`)
      else if (!/^FROM localhost\/agent\/debian:bookworm\s*$/m.test(readFileSync(r.recipe, 'utf8')))
        problems.push(`${r.language}: recipe ${r.recipe} must start FROM localhost/agent/debian:bookworm`)
    }
    for (const ext of Object.keys(r.fileRun))
      if (!fileRunArgv(r, `/in/main${ext}`).includes(`/in/main${ext}`)) problems.push(`${r.language}: fileRun["${ext}"] does not pass the file`)
  }
  return problems
}
