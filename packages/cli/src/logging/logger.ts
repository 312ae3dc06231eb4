import {AsyncLocalStorage} from 'node:async_hooks'
import {mkdirSync} from 'node:fs'
import {dirname, resolve} from 'node:path'
import type winston from 'winston'

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

export interface LoggerOptions {
  level?: LogLevel
  file?: string
}

type Meta = Record<string, unknown>

/** The four calls agent makes; diagnostics only, results go to stdout. */
export interface Logger {
  debug(message: string, meta?: Meta): void
  info(message: string, meta?: Meta): void
  warn(message: string, meta?: Meta): void
  error(message: string, meta?: Meta): void
}

const RANK: Record<LogLevel, number> = {error: 0, warn: 1, info: 2, debug: 3}

/**
 * With --log-file: winston writes JSON lines (everything, whatever the console shows). winston is
 * imported only then (it costs start-up time); lines logged while it loads are kept, with their
 * own timestamps, and written first.
 */
class FileSink {
  private target?: winston.Logger
  private pending: Meta[] = []
  readonly ready: Promise<void>

  constructor(file: string) {
    mkdirSync(dirname(file), {recursive: true})
    this.ready = import('winston').then(
      ({default: w}) => {
        const stamp = w.format((info) => {
          info.timestamp ??= new Date().toISOString()
          return info
        })
        this.target = w.createLogger({
          levels: w.config.npm.levels,
          transports: [new w.transports.File({filename: file, level: 'debug', format: w.format.combine(stamp(), w.format.json())})],
        })
        for (const line of this.pending) this.target.log(line as unknown as winston.LogEntry)
        this.pending = []
      },
      (err: unknown) => {
        process.stderr.write(`agent: warn: cannot write the log file ${file}: ${String(err)}\n`)
        this.pending = []
      },
    )
  }

  write(level: LogLevel, message: string, meta?: Meta): void {
    if (this.target) this.target.log({level, message, ...meta})
    else this.pending.push({level, message, ...meta, timestamp: new Date().toISOString()})
  }

  /** Waits for the file to be flushed, so a JSON log is complete when the process exits. */
  async close(): Promise<void> {
    await this.ready
    const t = this.target
    if (!t) return
    await new Promise<void>((done) => {
      t.on('finish', () => done())
      t.end()
      setTimeout(done, 500).unref()
    })
  }
}

let currentLevel: LogLevel = 'info'
let sink: FileSink | undefined
let configured = false

/** agent serve's route: while it runs a client's command, that command's diagnostics go to the client. */
export interface ConsoleOverride {
  level: LogLevel
  write(line: string): void
}
const overrides = new AsyncLocalStorage<ConsoleOverride>()

/** Runs fn with the console lines it logs (at o.level, the client's) handed to o.write instead of stderr. */
export function withConsole<T>(o: ConsoleOverride, fn: () => T): T {
  return overrides.run(o, fn)
}

function write(level: LogLevel, message: string, meta?: Meta): void {
  const o = overrides.getStore()
  if (RANK[level] <= RANK[o?.level ?? currentLevel]) {
    const line = `agent: ${level === 'info' ? '' : `${level}: `}${message}\n`
    if (o) o.write(line)
    else process.stderr.write(line)
  }
  sink?.write(level, message, meta)
}

const instance: Logger = {
  debug: (m, meta) => write('debug', m, meta),
  info: (m, meta) => write('info', m, meta),
  warn: (m, meta) => write('warn', m, meta),
  error: (m, meta) => write('error', m, meta),
}

/** Diagnostics go to stderr (readable) and, with a log file, to JSON lines; stdout is kept for results. */
export function configureLogger(opts: LoggerOptions = {}): Logger {
  currentLevel = opts.level ?? 'info'
  configured = true
  const file = opts.file ? resolve(opts.file) : undefined
  if (file !== sinkFile) {
    const old = sink
    void old?.close()
    sink = file ? new FileSink(file) : undefined
    sinkFile = file
  }
  return instance
}
let sinkFile: string | undefined

export function logger(): Logger {
  if (!configured) configureLogger()
  return instance
}

export function logLevel(): LogLevel {
  return currentLevel
}

/** Waits for the log file to flush, so a JSON log is complete when the process exits. */
export async function closeLogger(): Promise<void> {
  const s = sink
  sink = undefined
  sinkFile = undefined
  configured = false
  await s?.close()
}
