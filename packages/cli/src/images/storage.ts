import {randomBytes} from 'node:crypto'
import {existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {isAbsolute, join, resolve} from 'node:path'

/** Why agent will not use an image store's configuration, and what to do about it. */
export interface StoreProblem {
  reason: string
  fix: string
}

/** The environment and flags that point buildah (and krunvm's buildah) at our storage. */
export interface ImageStore {
  /** Extra environment for every buildah call; empty when using the user's normal storage. */
  env: Record<string, string>
  /** `--signature-policy` path, when isolated. */
  policy?: string
  /** The storage dir, when isolated. */
  dir?: string
  /**
   * When isolated on Linux: the dir that stands in for /var/lib/containers while buildah runs.
   * containers/image keeps its blob-info cache at /var/lib/containers/cache whatever storage.conf
   * says, so `Buildah` runs writing commands in a private mount namespace with this dir bound over it.
   */
  hostDir?: string
  /** Set when the configuration found in `dir` cannot be used; nothing may run buildah with it. */
  problem?: StoreProblem
}

/** The file that owns the image store's configuration on macOS. */
export const MACOS_SETUP = 'scripts/macos/setup.sh'

/**
 * With AGENT_STATE_DIR set, buildah's graph root and run root live under it, so a test run
 * never touches /var/lib/containers. AGENT_IMAGE_STORE points several state dirs at one
 * store (the test suite shares its built images that way). Otherwise the user's normal
 * container storage is used.
 *
 * agent never replaces a configuration file that is already there (a person or the macOS set-up
 * script may have written it); it checks it and reports what is wrong in `problem`. On Linux it
 * writes the files that are missing. On macOS it writes nothing: scripts/macos/setup.sh owns the
 * store there (the vfs driver and the graph root krunvm's buildah uses on the case-sensitive volume).
 */
export function imageStore(stateRoot: string, env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): ImageStore {
  const dir = env.AGENT_IMAGE_STORE
    ? resolve(env.AGENT_IMAGE_STORE)
    : env.AGENT_STATE_DIR
      ? join(resolve(stateRoot), 'containers')
      : undefined
  if (!dir) return {env: {}}
  const storageConf = join(dir, 'storage.conf')
  const policy = join(dir, 'policy.json')
  const registries = join(dir, 'registries.conf')
  const store: ImageStore = {
    dir,
    policy,
    env: {
      CONTAINERS_STORAGE_CONF: storageConf,
      CONTAINERS_REGISTRIES_CONF: registries,
      CONTAINERS_POLICY: policy,
    },
  }
  if (platform === 'darwin') {
    const missing = [storageConf, policy, registries].filter((f) => !existsSync(f))
    if (missing.length > 0) {
      return {
        ...store,
        problem: {
          reason: `the image store ${dir} is not set up (missing ${missing.join(', ')}); on macOS agent does not write it itself`,
          fix: `run ${MACOS_SETUP} (it writes storage.conf with the vfs driver and the graph root krunvm shares), then point AGENT_STATE_DIR at the state dir it prints`,
        },
      }
    }
    return {...store, problem: checkStorageConf(storageConf, platform)}
  }
  const hostDir = join(dir, 'host-var-lib-containers')
  for (const sub of ['storage', 'runroot', 'host-var-lib-containers']) mkdirSync(join(dir, sub), {recursive: true, mode: 0o700})
  // TOML basic strings share JSON's escapes for what a path can hold.
  const q = (s: string) => JSON.stringify(s)
  writeIfAbsent(
    storageConf,
    `# Written by agent: image storage isolated under ${dir}\n[storage]\ndriver = "overlay"\ngraphroot = ${q(join(dir, 'storage'))}\nrunroot = ${q(join(dir, 'runroot'))}\n`,
  )
  writeIfAbsent(policy, JSON.stringify({default: [{type: 'insecureAcceptAnything'}]}, null, 2) + '\n')
  writeIfAbsent(registries, '# Written by agent\nunqualified-search-registries = ["docker.io"]\nshort-name-mode = "permissive"\n')
  return {...store, hostDir, problem: checkStorageConf(storageConf, platform)}
}

/**
 * Creates `path` with `text` only when nothing is there: written aside, then hard-linked into
 * place, so a file someone else wrote (or wrote a moment ago) is never replaced or seen half-written.
 */
function writeIfAbsent(path: string, text: string): void {
  if (existsSync(path)) return
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  writeFileSync(tmp, text, {mode: 0o600})
  try {
    linkSync(tmp, path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  } finally {
    rmSync(tmp, {force: true})
  }
}

/** The `[storage]` settings agent depends on, read from a containers-storage storage.conf. */
export interface StorageSettings {
  driver?: string
  graphroot?: string
  runroot?: string
}

/** Reads driver, graphroot and runroot from the `[storage]` table (basic or literal strings). */
export function readStorageSettings(text: string): StorageSettings {
  const out: StorageSettings = {}
  let table = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    const header = /^\[\s*([A-Za-z0-9_.-]+)\s*\]/.exec(line)
    if (header) {
      table = header[1]
      continue
    }
    if (table !== 'storage') continue
    const m = /^(driver|graphroot|runroot)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)')\s*(?:#.*)?$/.exec(line)
    if (!m) continue
    let value = m[3]
    if (value === undefined) {
      try {
        value = JSON.parse(`"${m[2]}"`) as string
      } catch {
        continue
      }
    }
    out[m[1] as keyof StorageSettings] = value
  }
  return out
}

/** What is wrong with a storage.conf someone else wrote, for this platform (undefined: nothing). */
export function checkStorageConf(path: string, platform: NodeJS.Platform): StoreProblem | undefined {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    return {reason: `cannot read ${path}: ${(err as Error).message}`, fix: 'make it readable, or move it aside so agent can write its own (Linux)'}
  }
  const s = readStorageSettings(text)
  const fix = platform === 'darwin' ? `run ${MACOS_SETUP} again (it keeps a copy of the file it replaces), or edit ${path}` : `edit ${path}, or move it aside so agent writes its own`
  for (const key of ['graphroot', 'runroot'] as const) {
    const v = s[key]
    if (!v) return {reason: `${path} sets no ${key} in its [storage] table, so agent cannot tell where its images would go`, fix}
    if (!isAbsolute(v)) return {reason: `${path}: ${key} must be an absolute path, got ${JSON.stringify(v)}`, fix}
  }
  if (platform === 'darwin' && s.driver !== 'vfs') {
    const got = s.driver === undefined ? 'no driver' : `driver = ${JSON.stringify(s.driver)}`
    return {reason: `${path} has ${got}: on macOS buildah (for agent and for krunvm) can only use the vfs driver (overlay exists only on Linux)`, fix}
  }
  return undefined
}
