import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {isValidImageRef, type Runtime} from '@agent/runtime-kit'
import {AgentError, errorMessage, usageError} from '../errors.js'
import type {Buildah} from './buildah.js'

export interface ImageChoice {
  image: string
  source: 'flag' | 'env' | 'config' | 'local' | 'remote'
  /** A sentence for `vm create` to print: which image, and why. */
  reason: string
  /** Already seen in local storage while choosing, so ensureImage need not look again. */
  present?: boolean
}

/** The tag `agent image build <language>` gives its result. */
export function localImageName(language: string): string {
  return `localhost/agent/${language}:latest`
}

/** `AGENT_IMAGE_<LANGUAGE>`: upper case, '-' becomes '_'. */
export function imageEnvVar(language: string): string {
  return `AGENT_IMAGE_${language.toUpperCase().replaceAll('-', '_')}`
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
  const file = join(stateRoot, 'config.json')
  if (!existsSync(file)) return {}
  let doc: unknown
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'))
  } catch (err) {
    throw usageError(`cannot read ${file}: ${errorMessage(err)}`, 'fix or remove the file')
  }
  const images = (doc as {images?: unknown} | null)?.images
  if (images === undefined) return {}
  if (!images || typeof images !== 'object' || Array.isArray(images)) throw usageError(`${file}: "images" must map languages to image references`)
  return images as Record<string, string>
}

/**
 * Which image a VM of `language` boots from, in order: --image; AGENT_IMAGE_<LANGUAGE>; the
 * state dir's config.json; an image built locally by `agent image build`; the runtime's default
 * remote image.
 */
export async function chooseImage(o: {
  language: string
  runtime: Runtime
  flagImage?: string
  buildah: Buildah
  stateRoot: string
  env?: NodeJS.ProcessEnv
}): Promise<ImageChoice> {
  const env = o.env ?? process.env
  const language = o.runtime.language ?? o.language
  if (o.flagImage !== undefined) {
    const image = checkImageRef(o.flagImage, '--image')
    return {image, source: 'flag', reason: `${image}: given with --image`}
  }
  const names = [...new Set([language, o.language])]
  for (const name of names) {
    const key = imageEnvVar(name)
    const fromEnv = env[key]?.trim()
    if (fromEnv) {
      const image = checkImageRef(fromEnv, key)
      return {image, source: 'env', reason: `${image}: set by ${key}`}
    }
  }
  const configured = configuredImages(o.stateRoot)
  for (const name of names) {
    const fromConfig = configured[name]
    if (fromConfig !== undefined) {
      const file = join(o.stateRoot, 'config.json')
      const image = checkImageRef(String(fromConfig), `image for ${name} in ${file}`)
      return {image, source: 'config', reason: `${image}: configured in ${file}`}
    }
  }
  const local = localImageName(language)
  if (await o.buildah.imageExists(local)) {
    return {image: local, source: 'local', reason: `${local}: built locally by \`agent image build ${language}\``, present: true}
  }
  const remote = o.runtime.image
  return {
    image: remote,
    source: 'remote',
    reason: `${remote}: the ${language} runtime's default image (no local build; \`agent image build ${language}\` makes one offline)`,
  }
}

/** Pulls the chosen image when it is not in local storage yet. */
export async function ensureImage(choice: ImageChoice, buildah: Buildah, language: string, timeoutMs = pullTimeoutMs()): Promise<void> {
  if (choice.present || (await buildah.imageExists(choice.image))) return
  if (choice.source === 'local') {
    throw new AgentError('image', `${choice.image} disappeared from the image store`, {hint: `build it again with \`agent image build ${language}\``})
  }
  try {
    await buildah.pull(choice.image, timeoutMs)
  } catch (err) {
    if (err instanceof AgentError && err.kind === 'unavailable') throw err
    const why = errorMessage(err).replace(new RegExp(`^pulling ${escapeRe(choice.image)} (failed: )?`), '')
    throw new AgentError('image', `cannot pull ${choice.image}: ${why}`, {hint: `build it offline with \`agent image build ${language}\``, cause: err})
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
