import {existsSync, readFileSync} from 'node:fs'
import {dirname} from 'node:path'
import {recipeDebianBase, recipeSuiteProblem, type Runtime, type RuntimeVersion} from '@agent/runtime-kit'
import {AgentError, errorMessage, unavailable} from '../errors.js'
import {BASE_IMAGE, ensureBaseImage} from '../images/base-image.js'
import type {Buildah} from '../images/buildah.js'
import {checkImageRef, localImageName, pullTimeoutMs} from '../images/resolve.js'
import {logger} from '../logging/logger.js'
import type {ServiceContext} from './context.js'

export interface BuildResult {
  language: string
  /** The version built (`3.13`); null for a runtime that declares no versions. */
  version: string | null
  /** localhost/agent/<language>:<version> (or :latest for a runtime without versions). */
  image: string
  /** Every tag this build set: the image, plus localhost/agent/<language>:latest for the version `agent image build <language>` builds. */
  tags: string[]
  /** The Debian base the recipe builds FROM (localhost/agent/debian:trixie or :bookworm). */
  base: string
  /** True when the language image changed (a new image id); false when every step came from the layer cache. */
  built: boolean
  /** True when the Debian base had to be built by this run. */
  baseBuilt: boolean
  id: string
  baseId?: string
  recipe: string
  durationMs: number
}


/** The images a recipe builds FROM (its `FROM` lines, without stage names). */
export function recipeBases(containerfile: string): string[] {
  const text = readFileSync(containerfile, 'utf8')
  const out: string[] = []
  for (const m of text.matchAll(/^\s*FROM\s+(?:--\S+\s+)*(\S+)/gim)) out.push(m[1])
  return out
}

/**
 * What `agent image build` builds for a runtime: the version asked for, else the runtime's
 * offline version (the default version when it has a recipe); a clear error when there is no recipe.
 */
export function buildTarget(runtime: Runtime, version?: RuntimeVersion | null): {version: string | null; recipe: string; image: string; tags: string[]} {
  const v = version ?? (runtime.offlineVersion ? runtime.versions.find((x) => x.id === runtime.offlineVersion) : undefined)
  const recipe = v ? v.recipe : runtime.recipe
  const what = version ? `${runtime.language}@${version.id}` : runtime.language
  if (!recipe) {
    const others = runtime.versions.filter((x) => x.recipe).map((x) => `${runtime.language}@${x.id}`)
    throw unavailable(
      `${version ? `${what} has` : `the ${runtime.language} runtime ships`} no offline recipe (Containerfile)${version ? ': Debian packages no such version' : ''}`,
      `pull its image instead: \`agent image pull ${v?.image ?? runtime.image}\`${others.length ? `, or build one of ${others.join(', ')}` : ''}`,
    )
  }
  if (!existsSync(recipe)) throw unavailable(`the ${what} recipe ${recipe} does not exist`, 'reinstall the runtime plugin')
  const image = localImageName(runtime.language, v?.id)
  const tags = v && v.id === runtime.offlineVersion ? [image, localImageName(runtime.language)] : [image]
  return {version: v?.id ?? null, recipe, image, tags}
}

/** The offline recipe of a runtime (its offline version's), or a clear error when it ships none. */
export function runtimeRecipe(runtime: Runtime): string {
  return buildTarget(runtime).recipe
}

/**
 * The agent Debian base a recipe needs (localhost/agent/debian:<suite>), undefined when it uses
 * none; a recipe FROM a suite agent does not build is an error that names the line to change.
 */
export function recipeBase(recipe: string): {image: string; suite: string} | undefined {
  const text = readFileSync(recipe, 'utf8')
  const base = recipeDebianBase(text)
  if (!base) return undefined
  if (!base.supported) throw new AgentError('usage', recipeSuiteProblem(text, recipe)!, {hint: 'update the runtime plugin, or ask its author to'})
  return {image: base.ref, suite: base.suite}
}

interface BuildPlan {
  buildah: Buildah
  runtime: Runtime
  version: string | null
  recipe: string
  image: string
  tags: string[]
  /** The Debian base the recipe needs, if any. */
  needs?: {image: string; suite: string}
  noCache?: boolean
  signal?: AbortSignal
  t0: number
  base?: {built: boolean; id: string}
}

function plan(o: {buildah: Buildah; runtime: Runtime; version?: RuntimeVersion | null; noCache?: boolean; signal?: AbortSignal}): BuildPlan {
  const target = buildTarget(o.runtime, o.version)
  return {...o, ...target, needs: recipeBase(target.recipe), t0: performance.now()}
}

/** Step 1: the Debian base, when the recipe needs it and it is missing. Returns a note for the progress display. */
async function baseStep(p: BuildPlan, line?: (l: string) => void): Promise<string> {
  if (!p.needs) return 'not needed by this recipe'
  const tb = performance.now()
  p.base = await ensureBaseImage(p.buildah, {suite: p.needs.suite, signal: p.signal, onLine: line})
  return p.base.built ? `${p.needs.image} built in ${secs(tb)}` : `${p.needs.image} (already built)`
}

/** Step 2: the language image from the runtime's Containerfile (layer cache unless noCache). */
async function languageStep(p: BuildPlan, line?: (l: string) => void): Promise<{note: string; result: BuildResult}> {
  const tl = performance.now()
  const before = await p.buildah.imageId(p.image)
  await p.buildah.build({containerfile: p.recipe, contextDir: dirname(p.recipe), tag: p.image, noCache: p.noCache, signal: p.signal, onLine: line})
  const id = await p.buildah.imageId(p.image)
  if (!id) throw new AgentError('image', `building ${p.image} finished but the image is not in the store`)
  for (const tag of p.tags.slice(1)) if ((await p.buildah.imageId(tag)) !== id) await p.buildah.tag(p.image, tag)
  const built = id !== before
  return {
    note: built ? `${p.image} built in ${secs(tl)}` : `${p.image} (cached, unchanged)`,
    result: {
      language: p.runtime.language,
      version: p.version,
      image: p.image,
      tags: p.tags,
      base: p.needs?.image ?? BASE_IMAGE,
      built,
      baseBuilt: p.base?.built ?? false,
      id,
      baseId: p.base?.id,
      recipe: p.recipe,
      durationMs: Math.round(performance.now() - p.t0),
    },
  }
}

/**
 * `agent image build`: the Debian base the recipe starts FROM (trixie or bookworm) when it is
 * missing, then the language image from the version's Containerfile, tagged
 * localhost/agent/<language>:<version> (plus :latest for the runtime's offline version; only
 * :latest for a runtime without versions). The layer cache makes a second run quick; a failed
 * build tags nothing and leaves no container.
 */
export async function buildLanguageImage(o: {
  buildah: Buildah
  runtime: Runtime
  version?: RuntimeVersion | null
  noCache?: boolean
  signal?: AbortSignal
  onLine?: (step: BuildStep, line: string) => void
}): Promise<BuildResult> {
  const p = plan(o)
  await baseStep(p, (l) => o.onLine?.('base image', l))
  return (await languageStep(p, (l) => o.onLine?.('language image', l))).result
}

export type BuildStep = 'base image' | 'language image'

/** Build output worth showing on a non-interactive stderr: steps and milestones, not every apt line. */
export function isMilestone(line: string): boolean {
  return /^(STEP \d+\/\d+|build-base:|COMMIT\b|--> Using cache|Successfully tagged|E: )/.test(line)
}

/** buildLanguageImage under listr2 (steps "base image", "language image"): a live display on a terminal, plain `[STARTED]` lines without colour otherwise; always on stderr. */
export async function buildWithProgress(o: {
  buildah: Buildah
  runtime: Runtime
  version?: RuntimeVersion | null
  noCache?: boolean
  signal?: AbortSignal
  tty?: boolean
  quiet?: boolean
}): Promise<BuildResult> {
  const {Listr, ListrLogger, ProcessOutput} = await import('listr2')
  const tty = o.tty ?? Boolean(process.stderr.isTTY)
  const p = plan(o)
  let result: BuildResult | undefined
  const show = (step: BuildStep, task: {output?: string}) => (line: string) => {
    logger().debug(`${step}: ${line}`)
    if (tty || isMilestone(line)) task.output = line
  }
  const processOutput = new ProcessOutput(process.stderr, process.stderr)
  const listr = new Listr(
    [
      {
        title: 'base image',
        task: async (_ctx: unknown, task: {title?: string; output?: string}) => {
          task.title = `base image: ${await baseStep(p, show('base image', task))}`
        },
      },
      {
        title: 'language image',
        task: async (_ctx: unknown, task: {title?: string; output?: string}) => {
          const r = await languageStep(p, show('language image', task))
          result = r.result
          task.title = `language image: ${r.note}`
        },
      },
    ],
    {
      concurrent: false,
      exitOnError: true,
      registerSignalListeners: false,
      renderer: o.quiet ? 'silent' : tty ? 'default' : 'simple',
      fallbackRenderer: 'simple',
      forceColor: tty && !process.env.NO_COLOR,
      rendererOptions: {
        logger: new ListrLogger({processOutput, useIcons: tty, toStderr: ['STARTED', 'COMPLETED', 'FAILED', 'OUTPUT', 'TITLE', 'SKIPPED', 'RETRY', 'ROLLBACK', 'PROMPT', 'PAUSED', 'COMPLETED']}),
        ...(tty ? {outputBar: 1, persistentOutput: false} : {}),
      },
    } as never,
  )
  await listr.run()
  if (!result) throw new AgentError('internal', 'image build ended without a result')
  return result
}

export interface ImageRow {
  /** `repository:tag`, or `<none>` for an unnamed image. */
  name: string
  repository: string
  tag: string
  id: string
  size: string
  created: string
}

/** One row per image name (an image with two tags shows twice, as with docker). */
export async function listImages(ctx: Pick<ServiceContext, 'buildah'>): Promise<ImageRow[]> {
  const {buildah} = ctx
  const rows: ImageRow[] = []
  for (const img of await buildah.images()) {
    const names = img.names.length ? img.names : ['<none>:<none>']
    for (const name of names) {
      const i = name.lastIndexOf(':')
      const slash = name.lastIndexOf('/')
      const [repository, tag] = i > slash ? [name.slice(0, i), name.slice(i + 1)] : [name, '']
      rows.push({name, repository, tag, id: img.id.slice(0, 12), size: img.size ?? '', created: img.created ?? ''})
    }
  }
  return rows.sort((a, b) => a.name.localeCompare(b.name))
}

/** Strips what a reference may leave implicit, so `python:3.11-slim` matches `docker.io/library/python:3.11-slim`. */
export function normalizeRef(ref: string): string {
  let r = ref
  const first = r.split('/')[0]
  const hasRegistry = r.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')
  if (!hasRegistry) r = `docker.io/${r.includes('/') ? r : `library/${r}`}`
  const lastSlash = r.lastIndexOf('/')
  if (!r.includes('@') && r.lastIndexOf(':') <= lastSlash) r = `${r}:latest`
  return r
}

/** The runtime whose default image, a version's image, or a local build `ref` is, if any. */
export function runtimeForImage(ref: string, runtimes: readonly Runtime[]): Runtime | undefined {
  return runtimeVersionForImage(ref, runtimes)?.runtime
}

/** runtimeForImage, with the version `ref` belongs to (null: the runtime's default or unversioned image). */
export function runtimeVersionForImage(ref: string, runtimes: readonly Runtime[]): {runtime: Runtime; version: RuntimeVersion | null} | undefined {
  const n = normalizeRef(ref)
  for (const rt of runtimes) {
    const v = rt.versions.find((x) => normalizeRef(x.image) === n || normalizeRef(localImageName(rt.language, x.id)) === n)
    if (v) return {runtime: rt, version: v.default ? null : v}
    if (normalizeRef(rt.image) === n || normalizeRef(localImageName(rt.language)) === n) return {runtime: rt, version: null}
  }
  return undefined
}

/**
 * `agent image pull`: the reference is checked before buildah runs; a failure (unreachable
 * registry, unknown image, AGENT_PULL_TIMEOUT) is an `image` error naming the image and
 * pointing at the offline build.
 */
export async function pullImage(ctx: Pick<ServiceContext, 'buildah' | 'runtimes'>, ref: string, o: {timeoutMs?: number} = {}): Promise<{image: string; id: string; durationMs: number}> {
  checkImageRef(ref)
  const timeoutMs = o.timeoutMs ?? pullTimeoutMs()
  const t0 = performance.now()
  try {
    await ctx.buildah.pull(ref, timeoutMs)
  } catch (err) {
    if (err instanceof AgentError && err.kind === 'unavailable') throw err
    const why = errorMessage(err).replace(/^pulling \S+ (failed: )?/, '')
    // Plugins are loaded only now, to say which offline build would stand in for this image.
    const runtimes = await ctx.runtimes().then((r) => r.runtimes.map((x) => x.runtime), () => [])
    throw new AgentError('image', `cannot pull ${ref}: ${why}`, {hint: pullHint(ref, runtimes), cause: err})
  }
  const id = (await ctx.buildah.imageId(ref)) ?? ''
  return {image: ref, id, durationMs: Math.round(performance.now() - t0)}
}

/** What to do when `ref` cannot be pulled: the offline build of the runtime version it stands for. */
function pullHint(ref: string, runtimes: readonly Runtime[]): string {
  const found = runtimeVersionForImage(ref, runtimes)
  let hint = 'build a language image offline with `agent image build <language>` (see `agent runtimes`), or check the reference and your network'
  if (found) {
    const {runtime: rt, version} = found
    const v = version ?? (rt.offlineVersion ? rt.versions.find((x) => x.id === rt.offlineVersion) : undefined)
    if (version && !version.recipe) {
      const others = rt.versions.filter((x) => x.recipe).map((x) => `${rt.language}@${x.id}`)
      hint = `${rt.language}@${version.id} has no offline recipe${others.length ? `; build one of ${others.join(', ')} offline with \`agent image build\`` : ''}`
    } else if (v || rt.recipe) {
      const build = version ? `${rt.language}@${version.id}` : rt.language
      hint = `build it offline with \`agent image build ${build}\` (VMs use ${localImageName(rt.language, v?.id)} once it exists)`
    }
  }
  return hint
}

/** `agent image rm`: a missing image is NotFound (exit 3). */
export async function removeImage(ctx: Pick<ServiceContext, 'buildah'>, ref: string): Promise<{removed: string}> {
  checkImageRef(ref)
  if (!(await ctx.buildah.imageExists(ref))) throw new AgentError('not_found', `image not found: ${ref}`, {hint: 'see `agent image list`'})
  await ctx.buildah.removeImage(ref)
  return {removed: ref}
}

/** `agent image build <language[@version]>`: the runtime's offline recipe, on its Debian base. */
export async function buildImage(ctx: Pick<ServiceContext, 'buildah' | 'runtimes' | 'signal'>, o: {language: string; noCache?: boolean}): Promise<BuildResult> {
  const {runtime, version} = (await ctx.runtimes()).select(o.language)
  return buildWithProgress({buildah: ctx.buildah, runtime, version, noCache: o.noCache, signal: ctx.signal})
}

function secs(t0: number): string {
  return `${((performance.now() - t0) / 1000).toFixed(1)}s`
}
