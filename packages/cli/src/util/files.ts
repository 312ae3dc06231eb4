import {randomBytes} from 'node:crypto'
import {copyFileSync, constants, lstatSync, mkdirSync, cpSync, existsSync, realpathSync, renameSync, writeFileSync} from 'node:fs'
import {basename, join, resolve} from 'node:path'
import {AgentError, usageError} from '../errors.js'

/** The guest path a host file will have, after checking it cannot land outside /in. */
export function guestName(hostPath: string): string {
  const base = basename(hostPath)
  // Only the base name is kept, and it must be a plain, printable file name.
  if (!base || base === '.' || base === '..' || base.startsWith('.agent') || /[\x00-\x1f\x7f/\\]/.test(base) || base.length > 200) {
    throw usageError(`refusing --file ${JSON.stringify(hostPath)}: its name ${JSON.stringify(base)} is not a plain file name`)
  }
  return base
}

/** Checks every --file before anything is copied, so a bad one leaves nothing half-copied. */
export function checkInputFiles(hostPaths: readonly string[]): Array<{host: string; name: string}> {
  const seen = new Set<string>()
  return hostPaths.map((p) => {
    if (typeof p !== 'string' || p.includes('\0') || p.includes('\n')) throw usageError(`refusing --file ${JSON.stringify(p)}: the path holds a control character`)
    const host = resolve(p)
    let st
    try {
      st = lstatSync(host)
    } catch {
      throw new AgentError('usage', `--file ${JSON.stringify(p)} does not exist`)
    }
    if (st.isSymbolicLink()) throw usageError(`refusing --file ${JSON.stringify(p)}: it is a symbolic link (pass the file it points to, if you mean it)`)
    if (st.isDirectory()) throw usageError(`refusing --file ${JSON.stringify(p)}: it is a directory; pass files one by one`)
    if (!st.isFile()) throw usageError(`refusing --file ${JSON.stringify(p)}: it is not a regular file`)
    const name = guestName(host)
    if (seen.has(name)) throw usageError(`two --file arguments would both land at /in/${name}`)
    seen.add(name)
    return {host, name}
  })
}

export function copyInputFiles(files: Array<{host: string; name: string}>, inDir: string): void {
  mkdirSync(inDir, {recursive: true})
  // COPYFILE_FICLONE where possible; never follows a link at the destination (names were checked).
  for (const f of files) copyFileSync(f.host, join(inDir, f.name), constants.COPYFILE_FICLONE)
}

/** Copies the guest's /out back to a host dir. Symlinks are copied as links, never followed. */
export function copyOutputs(outDir: string, dest: string): void {
  mkdirSync(dest, {recursive: true})
  // outDir itself may be agent's link to the VM's disk; links inside it are the guest's and stay links.
  if (existsSync(outDir)) cpSync(realpathSync(outDir), dest, {recursive: true, dereference: false, verbatimSymlinks: true, force: true})
}

/** Writes a file whole or not at all: a reader (another agent process) never sees it half-written. */
export function writeFileAtomic(path: string, text: string, mode = 0o600): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  writeFileSync(tmp, text, {mode})
  renameSync(tmp, path)
}
