import {existsSync, readFileSync} from 'node:fs'
import {dirname} from 'node:path'
import type {Runtime} from '@agent/runtime-kit'
import {AgentError, errorMessage, unavailable} from '../errors.js'
import {BASE_IMAGE, ensureBaseImage} from '../images/base-image.js'
import type {Buildah} from '../images/buildah.js'
import {checkImageRef, localImageName, pullTimeoutMs} from '../images/resolve.js'
import {logger} from '../logging/logger.js'

export interface BuildResult {
  language: string
  image: string
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

/** The offline recipe of a runtime, or a clear error when it ships none. */
export function runtimeRecipe(runtime: Runtime): string {
  if (!runtime.recipe) {
    throw unavailable(`the ${runtime.language} runtime ships no offline recipe (Containerfile)`, `pull its image instead: \`agent image pull ${runtime.image}\``)
  }
  if (!existsSync(runtime.recipe)) throw unavailable(`the ${runtime.language} recipe ${runtime.recipe} does not exist`, 'reinstall the runtime plugin')
  return runtime.recipe
}

interface BuildPlan {
  buildah: Buildah
  runtime: Runtime
  recipe: string
  image: string
  needsBase: boolean
  noCache?: boolean
  signal?: AbortSignal
  t0: number
  base?: {built: boolean; id: string}
}

function plan(o: {buildah: Buildah; runtime: Runtime; noCache?: boolean; signal?: AbortSignal}): BuildPlan {
  const recipe = runtimeRecipe(o.runtime)
  return {...o, recipe, image: localImageName(o.runtime.language), needsBase: recipeBases(recipe).includes(BASE_IMAGE), t0: performance.now()}
}

/** Step 1: the Debian base, when the recipe needs it and it is missing. Returns a note for the progress display. */
async function baseStep(p: BuildPlan, line?: (l: string) => void): Promise<string> {
  if (!p.needsBase) return 'not needed by this recipe'
  const tb = performance.now()
  p.base = await ensureBaseImage(p.buildah, {signal: p.signal, onLine: line})
  return p.base.built ? `${BASE_IMAGE} built in ${secs(tb)}` : `${BASE_IMAGE} (already built)`
}

/** Step 2: the language image from the runtime's Containerfile (layer cache unless noCache). */
async function languageStep(p: BuildPlan, line?: (l: string) => void): Promise<{note: string; result: BuildResult}> {
  const tl = performance.now()
  const before = await p.buildah.imageId(p.image)
  await p.buildah.build({containerfile: p.recipe, contextDir: dirname(p.recipe), tag: p.image, noCache: p.noCache, signal: p.signal, onLine: line})
  const id = await p.buildah.imageId(p.image)
  if (!id) throw new AgentError('image', `building ${p.image} finished but the image is not in the store`)
  const built = id !== before
  return {
    note: built ? `${p.image} built in ${secs(tl)}` : `${p.image} (cached, unchanged)`,
    result: {
      language: p.runtime.language,
      image: p.image,
      base: BASE_IMAGE,
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
 * `agent image build`: the Debian base when the recipe needs it and it is missing, then the
 * language image from the runtime's Containerfile, tagged localhost/agent/<language>:latest.
 * The layer cache makes a second run quick; a failed build tags nothing and leaves no container.
 */
export async function buildLanguageImage(o: {buildah: Buildah; runtime: Runtime; noCache?: boolean; signal?: AbortSignal; onLine?: (step: BuildStep, line: string) => void}): Promise<BuildResult> {
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
export async function buildWithProgress(o: {buildah: Buildah; runtime: Runtime; noCache?: boolean; signal?: AbortSignal; tty?: boolean; quiet?: boolean}): Promise<BuildResult> {
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
export async function listImages(buildah: Buildah): Promise<ImageRow[]> {
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

/** The runtime whose default image (or local build) `ref` is, if any. */
export function runtimeForImage(ref: string, runtimes: readonly Runtime[]): Runtime | undefined {
  const n = normalizeRef(ref)
  return runtimes.find((rt) => normalizeRef(rt.image) === n || normalizeRef(localImageName(rt.language)) === n)
}

/**
 * `agent image pull`: the reference is checked before buildah runs; a failure (unreachable
 * registry, unknown image, AGENT_PULL_TIMEOUT) is an `image` error naming the image and
 * pointing at the offline build.
 */
export async function pullImage(o: {buildah: Buildah; ref: string; runtimes?: readonly Runtime[]; timeoutMs?: number}): Promise<{image: string; id: string; durationMs: number}> {
  const ref = checkImageRef(o.ref)
  const timeoutMs = o.timeoutMs ?? pullTimeoutMs()
  const t0 = performance.now()
  const rt = runtimeForImage(ref, o.runtimes ?? [])
  const hint = rt
    ? `build it offline with \`agent image build ${rt.language}\` (VMs use localhost/agent/${rt.language}:latest once it exists)`
    : 'build a language image offline with `agent image build <language>` (see `agent runtimes`), or check the reference and your network'
  try {
    await o.buildah.pull(ref, timeoutMs)
  } catch (err) {
    if (err instanceof AgentError && err.kind === 'unavailable') throw err
    const why = errorMessage(err).replace(/^pulling \S+ (failed: )?/, '')
    throw new AgentError('image', `cannot pull ${ref}: ${why}`, {hint, cause: err})
  }
  const id = (await o.buildah.imageId(ref)) ?? ''
  return {image: ref, id, durationMs: Math.round(performance.now() - t0)}
}

/** `agent image rm`: a missing image is NotFound (exit 3). */
export async function removeImage(buildah: Buildah, ref: string): Promise<{removed: string}> {
  checkImageRef(ref)
  if (!(await buildah.imageExists(ref))) throw new AgentError('not_found', `image not found: ${ref}`, {hint: 'see `agent image list`'})
  await buildah.removeImage(ref)
  return {removed: ref}
}

function secs(t0: number): string {
  return `${((performance.now() - t0) / 1000).toFixed(1)}s`
}
