import winston from 'winston'
import {mkdirSync} from 'node:fs'
import {dirname, resolve} from 'node:path'

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

export interface LoggerOptions {
  level?: LogLevel
  file?: string
}

let current: winston.Logger | undefined
let currentLevel: LogLevel = 'info'

/** Diagnostics go to stderr (readable) and, with a log file, to JSON lines; stdout is kept for results. */
export function configureLogger(opts: LoggerOptions = {}): winston.Logger {
  currentLevel = opts.level ?? 'info'
  const transports: winston.transport[] = [
    new winston.transports.Console({
      level: currentLevel,
      stderrLevels: [...LOG_LEVELS],
      format: winston.format.printf(({level, message}) => `agent: ${level === 'info' ? '' : `${level}: `}${message}`),
    }),
  ]
  if (opts.file) {
    const file = resolve(opts.file)
    mkdirSync(dirname(file), {recursive: true})
    // The file keeps everything, whatever the console shows.
    transports.push(
      new winston.transports.File({
        filename: file,
        level: 'debug',
        format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
      }),
    )
  }
  current?.close()
  current = winston.createLogger({levels: winston.config.npm.levels, transports})
  return current
}

export function logger(): winston.Logger {
  return current ?? configureLogger()
}

export function logLevel(): LogLevel {
  return currentLevel
}

/** Waits for file transports to flush, so a JSON log is complete when the process exits. */
export async function closeLogger(): Promise<void> {
  const l = current
  if (!l) return
  current = undefined
  await new Promise<void>((done) => {
    l.on('finish', () => done())
    l.end()
    setTimeout(done, 500).unref()
  })
}
