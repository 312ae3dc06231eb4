import {join} from 'node:path'
import {findVersion, isValidImageRef, type Runtime, type RuntimeVersion} from '@agent/runtime-kit'
import {AgentError, errorMessage, usageError} from '../errors.js'
import {configSection} from '../config/state-config.js'
import type {Buildah} from './buildah.js'

export interface ImageChoice {
  image: string
  source: 'flag' | 'env' | 'config' | 'local' | 'remote'
  /** A sentence for `vm create` to print: which image, and why. */
  reason: string
  /** Already seen in local storage while choosing, so ensureImage need not look again. */
  present?: boolean
  /**
   * The runtime version the VM gets: the one asked for, else the version whose image was chosen
   * (local build or default remote); null when unknown (an override with no version asked for)
   * or when the runtime declares no versions.
   */
  version?: string | null
  /** What `agent image build` takes to make an image offline instead (`python`, `python@3.11`); null when nothing can be. */
  buildRef?: string | null
}

/**
 * The tag `agent image build` gives its result: `localhost/agent/<language>:<version>` for a
 * version, `localhost/agent/<language>:latest` without one (the offline version's build carries
 * both).
 */
export function localImageName(language: string, version?: string | null): string {
  return `localhost/agent/${language}:${version ?? 'latest'}`
}

/** `AGENT_IMAGE_<LANGUAGE>` (or `AGENT_IMAGE_<LANGUAGE>_<VERSION>`): upper case, anything but letters and digits becomes '_'. */
export function imageEnvVar(language: string, version?: string | null): string {
  const name = version ? `${language}_${version}` : language
  return `AGENT_IMAGE_${name.toUpperCase().replaceAll(/[^A-Z0-9]/g, '_')}`
}

/** Refuses anything that is not a plain image reference, before buildah sees it. */
export function checkImageRef(ref: string, what = 'image reference'): string {
  if (typeof ref !== 'string' || !isValidImageRef(ref)) {
    throw usageError(
      `invalid ${what} ${JSON.stringify(ref)}: expected [registry[:port]/]name[:tag][@sha256:digest] in lower case, with no spaces or '..'`,
      'for example docker.io/library/python:3.11-slim or localhost/agent/python:latest',
    )
  }
  return ref
}

/** `<stateRoot>/config.json`'s `images` map, or {} when there is none. A broken file is a usage error, not a silent fallback. */
export function configuredImages(stateRoot: string): Record<string, string> {
  return configSection(stateRoot, 'images', 'an object mapping languages to image references') as Record<string, string>
}

/**
 * Which image a VM of `language` boots from, in order: --image; AGENT_IMAGE_<LANGUAGE>; the
 * state dir's config.json; an image built locally by `agent image build`; the runtime's default
 * remote image.
 *
 * With a version asked for (`python@3.12`), the overrides are the version's own
 * (AGENT_IMAGE_PYTHON_3_12, `"python@3.12"` in config.json), the local build is
 * localhost/agent/python:3.12 and the remote image is that version's. Without one, the
 * language-wide overrides apply, then the local build of the default version, then that of the
 * version `agent image build <language>` builds (so an offline build is used although the
 * default version has no recipe), then the default version's remote image.
 */
export async function chooseImage(o: {
  language: string
  runtime: Runtime
  /** The version asked for, if any (see RuntimeRegistry.select). */
  version?: RuntimeVersion | null
  flagImage?: string
  buildah: Buildah
  stateRoot: string
  env?: NodeJS.ProcessEnv
}): Promise<ImageChoice> {
  const env = o.env ?? process.env
  const rt = o.runtime
  const language = rt.language ?? o.language
  const asked = o.version ?? null
  // How `agent image build` names a version: the plain language for the version it builds by default.
  const buildRef = (v: string | null) => (v && (asked || v !== rt.offlineVersion) ? `${language}@${v}` : language)
  const target = asked ?? (rt.defaultVersion ? findVersion(rt, rt.defaultVersion) : undefined)
  // What builds offline instead: the target's recipe; without a version asked for, the offline version's.
  const offline: string | null = target
    ? target.recipe ? buildRef(target.id) : !asked && rt.offlineVersion ? buildRef(rt.offlineVersion) : null
    : rt.recipe ? language : null
  // A runtime without versions gets the choice it always had (no version, build hint by language).
  const versioned = rt.versions.length > 0
  const extra = versioned ? {version: asked?.id ?? null, buildRef: offline} : {}
  if (o.flagImage !== undefined) {
    const image = checkImageRef(o.flagImage, '--image')
    return {image, source: 'flag', reason: `${image}: given with --image`, ...extra}
  }
  const names = asked ? [`${language}@${asked.id}`] : [...new Set([language, o.language])]
  const keys = asked ? [imageEnvVar(language, asked.id)] : names.map((n) => imageEnvVar(n))
  for (const key of [...new Set(keys)]) {
    const fromEnv = env[key]?.trim()
    if (fromEnv) {
      const image = checkImageRef(fromEnv, key)
      return {image, source: 'env', reason: `${image}: set by ${key}`, ...extra}
    }
  }
  const configured = configuredImages(o.stateRoot)
  for (const name of names) {
    const fromConfig = configured[name]
    if (fromConfig !== undefined) {
      const file = join(o.stateRoot, 'config.json')
      const image = checkImageRef(String(fromConfig), `image for ${name} in ${file}`)
      return {image, source: 'config', reason: `${image}: configured in ${file}`, ...extra}
    }
  }
  // Local builds: the asked version's; else the default version's, then the offline version's.
  const candidates: Array<string | null> = asked
    ? [asked.id]
    : rt.versions.length
      ? [...new Set([rt.defaultVersion, rt.offlineVersion].filter((v): v is string => v !== null))]
      : [null]
  for (const v of candidates) {
    const local = localImageName(language, v)
    if (await o.buildah.imageExists(local)) {
      const because = !asked && v !== rt.defaultVersion ? ` (the default, ${language}@${rt.defaultVersion}, has none)` : ''
      const reason = `${local}: built locally by \`agent image build ${buildRef(v)}\`${because}`
      return {image: local, source: 'local', reason, present: true, ...(versioned ? {version: v, buildRef: buildRef(v)} : {})}
    }
  }
  const what = target ? `${language}@${target.id}` : language
  const withRecipe = rt.versions.filter((v) => v.recipe).map((v) => v.id)
  const howOffline = !versioned
    ? `\`agent image build ${language}\` makes one offline`
    : offline
      ? `\`agent image build ${offline}\` makes ${target && !target.recipe ? `${language}@${rt.offlineVersion}` : 'one'} offline`
      : withRecipe.length
        ? `${what} has no offline recipe; versions that build offline: ${withRecipe.join(', ')}`
        : 'no offline recipe'
  return {
    image: target?.image ?? rt.image,
    source: 'remote',
    reason: `${target?.image ?? rt.image}: the ${what} runtime's default image (no local build; ${howOffline})`,
    ...(versioned ? {version: target?.id ?? null, buildRef: offline} : {}),
  }
}

/** Pulls the chosen image when it is not in local storage yet. */
export async function ensureImage(choice: ImageChoice, buildah: Buildah, language: string, timeoutMs = pullTimeoutMs()): Promise<void> {
  if (choice.present || (await buildah.imageExists(choice.image))) return
  const build = choice.buildRef === undefined ? language : choice.buildRef
  if (choice.source === 'local') {
    throw new AgentError('image', `${choice.image} disappeared from the image store`, {hint: `build it again with \`agent image build ${build}\``})
  }
  try {
    await buildah.pull(choice.image, timeoutMs)
  } catch (err) {
    if (err instanceof AgentError && err.kind === 'unavailable') throw err
    const why = errorMessage(err).replace(new RegExp(`^pulling ${escapeRe(choice.image)} (failed: )?`), '')
    const hint = build
      ? `build it offline with \`agent image build ${build}\``
      : `${choice.version ? `${language}@${choice.version}` : language} has no offline recipe: pick a version that has one (\`agent runtimes\`), or give --image`
    throw new AgentError('image', `cannot pull ${choice.image}: ${why}`, {hint, cause: err})
  }
}

/** AGENT_PULL_TIMEOUT (seconds), default 60. */
export function pullTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.AGENT_PULL_TIMEOUT?.trim()
  if (!raw) return 60_000
  const s = Number(raw)
  if (!Number.isFinite(s) || s <= 0 || s > 86_400) throw usageError(`AGENT_PULL_TIMEOUT must be a number of seconds between 1 and 86400 (got ${JSON.stringify(raw)})`)
  return Math.round(s * 1000)
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
