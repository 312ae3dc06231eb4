import {existsSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'
import {DEBIAN_SUITES, DEFAULT_DEBIAN_SUITE, debianBaseImage} from '@agent/runtime-kit'
import {AgentError, unavailable} from '../errors.js'
import {Buildah, lastLines, onPath} from './buildah.js'

/** The shared Debian base the first-party recipes start FROM (trixie). Recipes may use any suite in DEBIAN_SUITES. */
export const BASE_IMAGE = debianBaseImage(DEFAULT_DEBIAN_SUITE)
export {DEBIAN_SUITES, DEFAULT_DEBIAN_SUITE}
export const DEFAULT_APT_MIRROR = 'http://deb.debian.org/debian'

/** The checkout's `images/` dir (recipes), or AGENT_IMAGES_DIR. */
export function recipesDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.AGENT_IMAGES_DIR) return resolve(env.AGENT_IMAGES_DIR)
  // dist/images/base-image.js (or src/images/base-image.ts) -> packages/cli -> repo root.
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'images')
}

export function baseRecipe(env: NodeJS.ProcessEnv = process.env): string {
  const script = join(recipesDir(env), 'debian', 'build-base.sh')
  if (!existsSync(script)) throw unavailable(`the Debian base recipe is missing (looked for ${script})`, 'set AGENT_IMAGES_DIR to the images/ dir of an agent checkout')
  return script
}

export function aptMirror(env: NodeJS.ProcessEnv = process.env): string {
  const m = (env.AGENT_APT_MIRROR ?? '').trim() || DEFAULT_APT_MIRROR
  if (!/^(https?:\/\/[^\s'"`$\\]+|file:\/\/\/[^\s'"`$\\]*)$/.test(m)) {
    throw new AgentError('usage', `AGENT_APT_MIRROR must be an http(s):// or file:/// URL (got ${JSON.stringify(m)})`)
  }
  return m
}

export interface BaseBuildOptions {
  /** Debian suite to build (one of DEBIAN_SUITES; default trixie): the image is localhost/agent/debian:<suite>. */
  suite?: string
  /** Rebuild even when the base exists. */
  force?: boolean
  onLine?: (line: string) => void
  signal?: AbortSignal
  env?: NodeJS.ProcessEnv
}

/**
 * Builds localhost/agent/debian:<suite> (default BASE_IMAGE) with images/debian/build-base.sh
 * (debootstrap minbase from AGENT_APT_MIRROR), unless it is already in the store. Returns whether
 * it was built. A failed build tags nothing and leaves no working container (the script cleans up
 * after itself).
 */
export async function ensureBaseImage(buildah: Buildah, o: BaseBuildOptions = {}): Promise<{built: boolean; id: string; image: string}> {
  const suite = o.suite ?? DEFAULT_DEBIAN_SUITE
  if (!(DEBIAN_SUITES as readonly string[]).includes(suite))
    throw new AgentError('usage', `agent does not build a Debian "${suite}" base (it builds: ${DEBIAN_SUITES.join(', ')})`)
  const image = debianBaseImage(suite)
  if (!o.force) {
    const id = await buildah.imageId(image)
    if (id) return {built: false, id, image}
  }
  const env = o.env ?? process.env
  const mirror = aptMirror(env)
  const script = baseRecipe(env)
  const tail: string[] = []
  // One base build per store at a time: a second `agent image build` waits, then finds it built.
  const lock = join(buildah.store.dir ?? tmpdir(), `.agent-base-build-${suite}.lock`)
  const [file, args] = onPath('flock') ? ['flock', ['--wait', '3600', lock, 'bash', script, image]] : ['bash', [script, image]]
  const res = await buildah.exec(file, args, {
    env: {
      AGENT_BASE_IF_MISSING: o.force ? '0' : '1',
      AGENT_APT_MIRROR: mirror,
      AGENT_BUILDAH: buildah.bin,
      ...(buildah.store.policy ? {AGENT_SIGNATURE_POLICY: buildah.store.policy} : {}),
      // The suite follows the image name (the recipe's FROM line), never the caller's environment.
      AGENT_DEBIAN_SUITE: suite,
    },
    signal: o.signal,
    onLine: (line) => {
      tail.push(line)
      if (tail.length > 30) tail.shift()
      o.onLine?.(line)
    },
  })
  if (res.exitCode !== 0) {
    const why = tail.filter((l) => /E:|error|fail|cannot|couldn't|unable/i.test(l) && !/^build-base: failed/.test(l)).slice(-3)
    throw new AgentError('image', `building the Debian base ${image} failed: ${why.length ? why.join(' | ') : lastLines(res.all, 3)}`, {
      hint: `check that ${mirror} is reachable (set AGENT_APT_MIRROR to use another Debian mirror)`,
    })
  }
  const id = await buildah.imageId(image)
  if (!id) throw new AgentError('image', `the Debian base build finished but ${image} is not in the image store`)
  return {built: true, id, image}
}
