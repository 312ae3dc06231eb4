/**
 * The CLI's own fast path: the command lines agent serve's route takes (fast/route-request.ts:
 * `vm exec` and `vm run` on one VM, streamed, and `vm list`), when no server took them, run here
 * without loading oclif, which is most of what a short command costs (bench/REPORT.md). The
 * command itself is the same code oclif's command runs (cli/routed-command.ts), with the same
 * logger set-up, Ctrl-C handling, error renderer and exit codes as base-command.ts; a test runs
 * each case three ways (server, here, oclif) and compares (test/e2e/serve-route.test.ts).
 * undefined: not taken (--json, log settings, AGENT_FAST_PATH=off, anything the narrow parser
 * leaves to oclif, or the CLI's plugins not where they should be), and nothing was written.
 * bin/run.js asks only when no plugin is installed or linked.
 */
import {fileURLToPath} from 'node:url'
import type {Config} from '@oclif/core'
import {defaultRendering, routableRequest} from '../fast/route-request.js'

/** Services in this path never read oclif's config (only --json and runtimes would; neither comes here). */
const NO_CONFIG = new Proxy(
  {},
  {
    get: (_, key) => {
      throw new Error(`internal: the fast path has no oclif config (config.${String(key)})`)
    },
  },
) as Config

export async function tryLocalCommand(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number | undefined> {
  if (env.AGENT_FAST_PATH === 'off') return undefined
  if (!defaultRendering(env)) return undefined
  const req = routableRequest(argv)
  // --json is rendered by oclif (its colorizer and theme).
  if (!req || req.json) return undefined
  const {coreRuntimeHooks, runCoreRuntimeHooks} = await import('../runtimes/core-runtimes.js')
  const hooks = coreRuntimeHooks(fileURLToPath(new URL('../..', import.meta.url)))
  if (!hooks) return undefined

  // From here on this is the command. A reader that goes away (| head) is not an error, as
  // oclif's Command module makes it for every command.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err?.code === 'EPIPE') return
    throw err
  })
  const [{closeLogger, configureLogger, logger}, {stopOnSignals}, {errorOutput}] = await Promise.all([import('../logging/logger.js'), import('./interrupt.js'), import('./error-output.js')])
  configureLogger({level: 'info'})
  const abort = new AbortController()
  stopOnSignals(abort)
  let repo: import('../state/vm-repository.js').VmRepository | undefined
  try {
    const [{ensureStateDir, resolveStateDir}, {makeContext}, {runRoutedCommand}] = await Promise.all([import('../config/state-dir.js'), import('../services/context.js'), import('./routed-command.js')])
    const paths = ensureStateDir(resolveStateDir())
    const ctx = makeContext({
      paths,
      db: async () => (repo ??= await (await import('../state/vm-repository.js')).openVmRepository(paths.db)),
      config: NO_CONFIG,
      signal: abort.signal,
      info: (m) => logger().info(m),
      runtimes: () => runCoreRuntimeHooks(hooks),
    })
    return await runRoutedCommand(ctx, req, {stdout: (s) => void process.stdout.write(s)})
  } catch (err) {
    const out = errorOutput(err as Error, {json: false, debug: false})
    if (out.stdout) process.stdout.write(out.stdout)
    if (out.stderr) process.stderr.write(out.stderr)
    return out.code
  } finally {
    await repo?.close().catch(() => undefined)
    await closeLogger()
  }
}
