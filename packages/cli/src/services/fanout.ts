import {cpus} from 'node:os'
import {Listr, ListrLogger, ProcessOutput} from 'listr2'
import {errorMessage} from '../errors.js'

export interface FanoutOutcome<T> {
  ref: string
  ok: boolean
  value?: T
  error?: string
  /** The error itself, for exit-code decisions. */
  cause?: unknown
  durationMs: number
}

export interface FanoutTask {
  /** Update the task's title (id, language, status). */
  title(t: string): void
  /** A line under the task. */
  output(line: string): void
}

export interface FanoutOptions<T> {
  concurrency?: number
  signal?: AbortSignal
  /** Initial task title for a ref. */
  title(ref: string): string
  /** Final title once done; return a failure reason to fail the task. */
  done(ref: string, value: T): {title: string; failure?: string}
}

/** A default that keeps a 2-core host responsive: sandboxes are mostly waiting on the launcher. */
export function defaultConcurrency(): number {
  return Math.max(2, Math.min(8, cpus().length * 2))
}

/**
 * Runs work for many VMs at once under listr2, one task per VM. A failure in one does not
 * stop the others. Progress goes to stderr: a live renderer on a TTY, plain lines otherwise,
 * so stdout keeps the results.
 */
export async function fanout<T>(refs: readonly string[], work: (ref: string, task: FanoutTask) => Promise<T>, o: FanoutOptions<T>): Promise<FanoutOutcome<T>[]> {
  const outcomes = new Map<string, FanoutOutcome<T>>()
  const tty = Boolean(process.stderr.isTTY) && !process.env.CI && process.env.TERM !== 'dumb'
  const logger = new ListrLogger({useIcons: tty, processOutput: new ProcessOutput(process.stderr, process.stderr)})
  const list = new Listr(
    refs.map((ref) => ({
      title: o.title(ref),
      task: async (_: unknown, t: {title: string; output: string}) => {
        const t0 = performance.now()
        try {
          if (o.signal?.aborted) throw o.signal.reason ?? new Error('interrupted')
          const value = await work(ref, {title: (s) => (t.title = s), output: (l) => (t.output = l)})
          const {title, failure} = o.done(ref, value)
          t.title = title
          outcomes.set(ref, {ref, ok: !failure, value, error: failure, durationMs: performance.now() - t0})
          if (failure) throw new Error(failure)
        } catch (err) {
          if (!outcomes.has(ref)) outcomes.set(ref, {ref, ok: false, error: errorMessage(err), cause: err, durationMs: performance.now() - t0})
          throw err
        }
      },
    })) as never,
    {
      concurrent: o.concurrency ?? defaultConcurrency(),
      exitOnError: false,
      collectErrors: false,
      // agent's own handler aborts in-flight work cleanly; listr2's would exit 127 at once.
      registerSignalListeners: false,
      renderer: tty ? 'default' : 'simple',
      fallbackRenderer: 'simple',
      rendererOptions: {logger, collapseErrors: false, formatOutput: 'wrap'} as never,
      fallbackRendererOptions: {logger} as never,
      silentRendererCondition: refs.length === 0,
    },
  )
  await list.run().catch(() => undefined)
  return refs.map((ref) => outcomes.get(ref) ?? {ref, ok: false, error: 'not run', durationMs: 0})
}
