/**
 * `<runtime> --version`, asked once per binary rather than once per command: the first line of
 * a successful answer is kept in the state dir, keyed on the binary's identity (real path,
 * device, inode, size, mtime and ctime in ns). Installing, replacing or touching the binary
 * changes the key, so the binary is asked again. A failed answer is never kept.
 *
 * The cache lives in the (root-only, 0700) state dir and is only ever read as data: a version
 * string that decides what is refused or warned about, never a path or a command.
 */
import {existsSync, mkdirSync, readFileSync, realpathSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {resolveStateDir} from '../config/state-dir.js'
import {findBinary, tryRun} from '../system/index.js'
import {writeFileAtomic} from '../util/files.js'

export interface VersionAnswer {
  /** The binary could not be found or started. */
  missing: boolean
  exitCode: number
  /** First line of stdout (a successful answer) or of stderr (a failure). */
  line: string
  /** Came from the cache, no program started. */
  cached: boolean
}

const FILE = 'binary-versions.json'
const MAX_FILE = 64 * 1024
const MAX_ENTRIES = 16

interface Entry {
  key: string
  line: string
}

/** The binary's identity, or undefined when it cannot be found. */
export function binaryKey(bin: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const found = findBinary(bin, env)
  if (!found) return undefined
  try {
    const path = realpathSync(found)
    const s = statSync(path, {bigint: true})
    return [path, s.dev, s.ino, s.size, s.mtimeNs, s.ctimeNs].join(':')
  } catch {
    return undefined
  }
}

/** Where the cache is kept: the state dir's run/ dir, only when the state dir already exists. */
export function cacheFile(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const root = resolveStateDir(env)
  return existsSync(root) ? join(root, 'run', FILE) : undefined
}

function readCache(file: string): Entry[] {
  try {
    const text = readFileSync(file, 'utf8')
    if (text.length > MAX_FILE) return []
    const doc = JSON.parse(text) as unknown
    if (!Array.isArray(doc)) return []
    return doc.filter((e): e is Entry => typeof e?.key === 'string' && typeof e?.line === 'string' && e.line.length <= 512).slice(0, MAX_ENTRIES)
  } catch {
    return []
  }
}

function writeCache(file: string, entries: Entry[]): void {
  try {
    mkdirSync(join(file, '..'), {recursive: true, mode: 0o700})
    writeFileAtomic(file, JSON.stringify(entries.slice(0, MAX_ENTRIES)) + '\n')
  } catch {
    // A cache that cannot be written only costs the next command a probe.
  }
}

/** `bin --version`, from the cache when this very binary answered before. */
export async function probeVersion(bin: string, o: {env?: NodeJS.ProcessEnv; file?: string | null} = {}): Promise<VersionAnswer> {
  const env = o.env ?? process.env
  const key = binaryKey(bin, env)
  const file = o.file === null ? undefined : (o.file ?? cacheFile(env))
  if (key && file) {
    const hit = readCache(file).find((e) => e.key === key)
    if (hit) return {missing: false, exitCode: 0, line: hit.line, cached: true}
  }
  const res = await tryRun(bin, ['--version'], {timeoutMs: 10_000})
  if (res.missing) return {missing: true, exitCode: res.exitCode, line: '', cached: false}
  if (res.exitCode !== 0) return {missing: false, exitCode: res.exitCode, line: res.stderr.trim().split('\n')[0] ?? '', cached: false}
  const line = res.stdout.split('\n')[0]!.trim()
  // Kept only when the binary is still the one that answered (not replaced during the call).
  if (key && file && line.length <= 512 && binaryKey(bin, env) === key) writeCache(file, [{key, line}, ...readCache(file).filter((e) => e.key !== key)])
  return {missing: false, exitCode: 0, line, cached: false}
}
