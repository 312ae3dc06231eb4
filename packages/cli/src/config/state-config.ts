import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {errorMessage, usageError} from '../errors.js'

/**
 * One object of `<state>/config.json` ("images", "pool", "mcp", "kubernetes"), or {} when the file
 * or the key is absent. A broken file, or a key that is not an object, is a usage error naming the
 * file: never a silent fallback. `shape` completes "must be …" for the user.
 */
export function configSection(stateRoot: string, key: string, shape = 'an object'): Record<string, unknown> {
  const file = join(stateRoot, 'config.json')
  if (!existsSync(file)) return {}
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw usageError(`cannot read ${file}: ${errorMessage(err)}`, 'fix or remove the file')
  }
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw usageError(`${file} is not valid JSON: ${errorMessage(err)}`, 'fix or remove the file')
  }
  const v = doc !== null && typeof doc === 'object' ? (doc as Record<string, unknown>)[key] : undefined
  if (v === undefined) return {}
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw usageError(`"${key}" in ${file} must be ${shape}`)
  return v as Record<string, unknown>
}
