import {existsSync, readFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {pathToFileURL} from 'node:url'
import {RUNTIMES_HOOK, type RuntimesHookOptions} from '@agent/runtime-kit'
import {registryFromHook, type PluginInfo, type RuntimeRegistry} from './registry.js'

/** A core plugin's `agent:runtimes` hook files (absolute paths). */
export interface CoreRuntimeHook {
  plugin: PluginInfo
  files: string[]
}

/**
 * The `agent:runtimes` hooks of the plugins agent ships with (its package.json `oclif.plugins`),
 * found without loading oclif, for the fast path (cli/local-command.ts). That path runs only when
 * no plugin is installed or linked, so these are every plugin oclif would ask, found where oclif
 * finds them: node_modules/<name> from the CLI's root up, the hook file from the plugin's
 * package.json `oclif.hooks`. undefined when anything is not where it should be: the caller then
 * takes oclif's way, which says what is wrong. Synchronous, so the choice is made before anything runs.
 */
export function coreRuntimeHooks(cliRoot: string): CoreRuntimeHook[] | undefined {
  const names = (readJson(join(cliRoot, 'package.json'))?.oclif as {plugins?: unknown} | undefined)?.plugins
  if (!Array.isArray(names)) return undefined
  const hooks: CoreRuntimeHook[] = []
  for (const name of names) {
    const root = typeof name === 'string' ? packageRoot(cliRoot, name) : undefined
    const pjson = root && readJson(join(root, 'package.json'))
    if (!root || !pjson || pjson.name !== name || typeof pjson.version !== 'string') return undefined
    const hook = (pjson.oclif as {hooks?: Record<string, unknown>} | undefined)?.hooks?.[RUNTIMES_HOOK]
    if (hook === undefined) continue
    const files = ([] as unknown[]).concat(hook)
    if (!files.every((f) => typeof f === 'string' && existsSync(join(root, f)))) return undefined
    hooks.push({plugin: {name, version: pjson.version, type: 'core'}, files: (files as string[]).map((f) => join(root, f))})
  }
  return hooks
}

/**
 * Runs the hooks as oclif's runHook does (capturing errors): each file's default export is called
 * with the hook options, and what it returns, or why it failed, goes through the same
 * registryFromHook as loadRuntimes. A core plugin's hook gets no oclif context: it returns
 * declarations (plugins/<language>/src/hooks/runtimes.ts).
 */
export async function runCoreRuntimeHooks(hooks: readonly CoreRuntimeHook[]): Promise<RuntimeRegistry> {
  const opts: RuntimesHookOptions = {apiVersion: 1}
  const successes: {plugin: PluginInfo; result: unknown}[] = []
  const failures: {plugin: PluginInfo; error: unknown}[] = []
  for (const {plugin, files} of hooks) {
    for (const file of files) {
      try {
        const fn = ((await import(pathToFileURL(file).href)) as {default?: unknown}).default
        if (typeof fn !== 'function') throw new Error(`${file} exports no hook function`)
        successes.push({plugin, result: await (fn as (o: RuntimesHookOptions) => unknown)(opts)})
      } catch (error) {
        failures.push({plugin, error})
      }
    }
  }
  return registryFromHook(successes, failures)
}

/** Where node would find package `name` from dir: node_modules/<name> in dir or a parent. */
function packageRoot(from: string, name: string): string | undefined {
  if (!/^(@[\w.-]+\/)?[\w.-]+$/.test(name)) return undefined
  for (let dir = from; ; dir = dirname(dir)) {
    const root = join(dir, 'node_modules', name)
    if (existsSync(join(root, 'package.json'))) return root
    if (dirname(dir) === dir) return undefined
  }
}

function readJson(file: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(readFileSync(file, 'utf8'))
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined
  } catch {
    return undefined
  }
}
