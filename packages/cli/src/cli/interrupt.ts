import {AgentError, ExitCode} from '../errors.js'
import {logger} from '../logging/logger.js'

/**
 * Ctrl-C (or SIGTERM) as every command takes it: the first aborts `abort` (in-flight work stops
 * and cleans up, within 30 s), a second exits at once with 130.
 */
export function stopOnSignals(abort: AbortController): void {
  const onSignal = (sig: NodeJS.Signals) => {
    if (abort.signal.aborted) process.exit(ExitCode.Interrupted)
    logger().warn(`${sig}: stopping in-flight work (press Ctrl-C again to exit at once)`)
    abort.abort(new AgentError('interrupted', `interrupted by ${sig}`))
    setTimeout(() => process.exit(ExitCode.Interrupted), 30_000).unref()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
}
