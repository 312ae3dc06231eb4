#!/usr/bin/env node
// Start-up is most of what a short command costs (bench/REPORT.md), so this file answers what it
// can before loading oclif, and ends the process as soon as the output is flushed.
import {readFileSync} from 'node:fs'
import {arch, homedir, platform} from 'node:os'
import {join} from 'node:path'

const argv = process.argv.slice(2)

/** Writes everything still buffered on stdout and stderr, then exits (no wait for idle handles or timers). */
function exitFlushed(code) {
  let pending = 2
  const done = () => --pending === 0 && process.exit(code)
  process.stdout.write('', done)
  process.stderr.write('', done)
}

// `agent --version` prints exactly what oclif prints (config.userAgent), without loading it. oclif
// would also run plugins' init hooks first: fall back to it when a user plugin is installed or
// linked (agent plugins install/link), on WSL (oclif says "wsl"), and with oclif's DEBUG on.
if (argv[0] === '--version' && !process.env.DEBUG && !userPlugins() && !wsl()) {
  const pjson = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  process.stdout.write(`${pjson.name}/${pjson.version} ${platform()}-${arch() === 'ia32' ? 'x86' : arch()} node-${process.version}\n`)
  exitFlushed(0)
} else {
  // A running `agent serve` for this state dir runs vm exec/run/list for us (src/fast/serve-route.ts);
  // undefined: no server and no fast path, or not a command line they take, and nothing was written.
  let routed
  if (argv[0] === 'vm' && ['exec', 'run', 'list'].includes(argv[1]) && !process.env.DEBUG && !userPlugins()) {
    const {tryServeRoute} = await import('../dist/fast/serve-route.js')
    routed = await tryServeRoute(argv)
    // No server: the same command lines run here without oclif (src/cli/local-command.ts).
    if (routed === undefined) {
      const {tryLocalCommand} = await import('../dist/cli/local-command.js')
      routed = await tryLocalCommand(argv)
    }
  }
  if (typeof routed === 'number') exitFlushed(routed)
  else {
    // npm run build bundles oclif into dist/vendor (scripts/bundle.mjs): one file instead of a hundred.
    const {execute} = await import('../dist/vendor/oclif-core.js').catch(() => import('@oclif/core'))
    await execute({dir: import.meta.url})
    // Errors have exited already (oclif's handler); a command that returned is done.
    exitFlushed(process.exitCode ?? 0)
  }
}

/** Whether oclif would load plugins from its data dir (AGENT_DATA_DIR, else XDG_DATA_HOME/agent, else ~/.local/share/agent). */
function userPlugins() {
  const dir = process.env.AGENT_DATA_DIR || join(process.env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'agent')
  try {
    return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).oclif?.plugins?.length ?? 0) > 0
  } catch (err) {
    return err?.code !== 'ENOENT' // unreadable or malformed: let oclif say so
  }
}

function wsl() {
  if (platform() !== 'linux') return false
  try {
    return readFileSync('/proc/version', 'utf8').toLowerCase().includes('microsoft')
  } catch {
    return false
  }
}
