import {Command, Flags, Interfaces} from '@oclif/core'
import {GuestExit} from './errors.js'
import {errorOutput} from './cli/error-output.js'
import {stopOnSignals} from './cli/interrupt.js'
import {LOG_LEVELS, closeLogger, configureLogger, logLevel, logger, type LogLevel} from './logging/logger.js'
import {ensureStateDir, resolveStateDir, type StatePaths} from './config/state-dir.js'
import type {VmRepository} from './state/vm-repository.js'
import type {ServiceContext} from './services/context.js'

export type AgentFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof AgentCommand)['baseFlags'] & T['flags']>
export type AgentArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/**
 * Every agent command: global flags, logging, lazy state, and errors mapped to exit codes.
 * Commands stay thin: parse, call a service, render.
 */
export abstract class AgentCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true
  static override baseFlags = {
    'log-level': Flags.option({
      options: LOG_LEVELS,
      helpGroup: 'GLOBAL',
      env: 'AGENT_LOG_LEVEL',
      summary: 'Diagnostics shown on stderr.',
      default: 'info' as LogLevel,
    })(),
    'log-file': Flags.string({
      helpGroup: 'GLOBAL',
      env: 'AGENT_LOG_FILE',
      summary: 'Also write every log line, as JSON, to this file.',
    }),
  }

  protected flags!: AgentFlags<T>
  protected args!: AgentArgs<T>
  private _paths?: StatePaths
  private _repo?: VmRepository
  /** Aborted on the first Ctrl-C (or SIGTERM): in-flight work stops and cleans up; a second one exits at once. */
  protected readonly abort = new AbortController()

  public override async init(): Promise<void> {
    await super.init()
    // Log level first, so a flag parse error is still reported at the requested level.
    const lvl = (process.env.AGENT_LOG_LEVEL ?? '') as LogLevel
    configureLogger({level: LOG_LEVELS.includes(lvl) ? lvl : 'info', file: process.env.AGENT_LOG_FILE})
    const {args, flags} = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (super.ctor as typeof AgentCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      args: this.ctor.args,
      strict: this.ctor.strict,
    })
    this.flags = flags as AgentFlags<T>
    this.args = args as AgentArgs<T>
    configureLogger({level: this.flags['log-level'] as LogLevel, file: this.flags['log-file']})
    logger().debug(`agent ${this.id} ${JSON.stringify(this.argv)}`)
    stopOnSignals(this.abort)
  }

  /** Services' view of the world: state, database, plugins, and the abort signal. */
  protected async context(): Promise<ServiceContext> {
    const {makeContext} = await import('./services/context.js')
    return makeContext({paths: this.paths, db: () => this.repo(), config: this.config, signal: this.abort.signal, info: (m) => logger().info(m)})
  }

  /** The state dir, created on first use. */
  protected get paths(): StatePaths {
    this._paths ??= ensureStateDir(resolveStateDir())
    return this._paths
  }

  /** The database, opened lazily so that --help and --version never load TypeORM. */
  protected async repo(): Promise<VmRepository> {
    if (!this._repo) {
      const {openVmRepository} = await import('./state/vm-repository.js')
      this._repo = await openVmRepository(this.paths.db)
    }
    return this._repo
  }

  /** Writes a result line to stdout, unless --json is on (then only the returned document is printed). */
  protected out(line: string): void {
    if (!this.jsonEnabled()) process.stdout.write(line.endsWith('\n') ? line : `${line}\n`)
  }

  protected override async catch(err: Error & {exitCode?: number}): Promise<unknown> {
    // One renderer for failures, shared with agent serve's route (cli/error-output.ts).
    const out = errorOutput(err, {json: this.jsonEnabled(), debug: logLevel() === 'debug'})
    if (out.stdout) process.stdout.write(out.stdout)
    if (out.stderr) process.stderr.write(out.stderr)
    if (!(err instanceof GuestExit)) logger().debug(`exit ${out.code}: ${out.message}`, {stack: err.stack})
    await this.cleanup()
    await drainStdout()
    this.exit(out.code)
    return undefined
  }

  protected override async finally(err: Error | undefined): Promise<unknown> {
    await this.cleanup()
    return super.finally(err)
  }

  private async cleanup(): Promise<void> {
    const repo = this._repo
    this._repo = undefined
    await repo?.close().catch(() => undefined)
    await closeLogger()
  }
}

/** process.exit does not wait for a piped stdout: a large --json document would be cut. */
function drainStdout(): Promise<void> {
  return new Promise((done) => process.stdout.write('', () => done()))
}
