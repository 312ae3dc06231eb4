// Host programs and processes: the only module that starts programs (see run.ts).
export * from './run.js'
export * from './output.js'
export * from './processes.js'
