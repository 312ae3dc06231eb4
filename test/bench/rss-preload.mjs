// Loaded into an agent process with NODE_OPTIONS=--import=<this file> by the bench: at exit it
// appends the process's peak resident set size (getrusage ru_maxrss, KiB) to $BENCH_RSS_FILE.
import {appendFileSync} from 'node:fs'

const file = process.env.BENCH_RSS_FILE
if (file) {
  process.on('exit', () => {
    try {
      appendFileSync(file, `${process.resourceUsage().maxRSS}\n`)
    } catch {
      // the bench reports a missing sample; never disturb agent's exit
    }
  })
}
