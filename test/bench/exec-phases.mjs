// Where the time of `agent vm exec --vm ID --cmd 'echo hi'` goes, phase by phase, in ONE fresh
// process doing what the real command does in the same order, with a timestamp after each phase:
//   node bootstrap -> @oclif/core -> Config.load -> command class -> exec-command (services, listr2)
//   -> vm-repository (sqlite3) -> DB open -> resolve VM -> agent:runtimes hook
//   -> launcher module -> runtime exec (through agent-init) -> DB close
// A module shared by two phases is charged to the first that loads it, as in the real process.
// Usage: node exec-phases.mjs <cli package dir> (<vm id> | --startup-only | --list)
//   --startup-only stops after Config.load (what `agent --version` needs);
//   --list does what `agent vm list` does instead of the exec.
// Prints one JSON object {phases: [[name, ms], ...], output} on stdout. Reads AGENT_STATE_DIR.
import {existsSync} from 'node:fs'
import {createRequire} from 'node:module'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'

const [cliDir, vmId] = process.argv.slice(2)
const mode = vmId.startsWith('--') ? vmId : 'exec'
const phases = []
let last = performance.now()
phases.push(['node bootstrap (process start to first line of a script)', last])
const mark = (name) => {
  const t = performance.now()
  phases.push([name, t - last])
  last = t
}
const dist = (p) => pathToFileURL(join(cliDir, 'dist', p)).href
const req = createRequire(join(cliDir, 'package.json'))

// The CLI loads oclif as npm run build bundled it (dist/vendor, scripts/bundle.mjs).
const vendored = join(cliDir, 'dist', 'vendor', 'oclif-core.js')
const {Config} = await import(existsSync(vendored) ? pathToFileURL(vendored).href : pathToFileURL(req.resolve('@oclif/core')).href)
mark('import @oclif/core (bundled)')
const config = await Config.load(cliDir)
mark('oclif Config.load (package.json, manifest, 6 plugins)')
const done = (output) => process.stdout.write(JSON.stringify({phases, output}) + '\n')
// No process.exit() anywhere: like agent, the process ends when its event loop drains; the parent sees that delay.
if (mode === '--startup-only') done('')
else await command()

async function command() {
  const cmd = config.findCommand(mode === '--list' ? 'vm:list' : 'vm:exec')
  await cmd.load()
  mark(`load ${cmd.id} command class (base-command, winston, flags)`)
  const {configureLogger} = await import(dist('logging/logger.js'))
  configureLogger({level: 'info'})
  mark('configure logger')
  if (mode === '--list') await import(dist('services/vm-service.js'))
  else await import(dist('cli/exec-command.js'))
  mark(mode === '--list' ? 'import vm-service (images, launchers/select, registry, util)' : 'import exec-command (vm-service, fanout/listr2, images, select)')
  const {makeContext, launchContext} = await import(dist('services/context.js'))
  const {ensureStateDir, resolveStateDir} = await import(dist('config/state-dir.js'))
  const paths = ensureStateDir(resolveStateDir())
  mark('state dir check (mkdir, probe write)')
  const {openVmRepository} = await import(dist('state/vm-repository.js'))
  mark('import vm-repository (sqlite3)')
  const repo = await openVmRepository(paths.db)
  mark('DB open (initialize, WAL pragmas, migrations check)')
  const ctx = makeContext({paths, db: async () => repo, config, info: () => undefined})
  if (mode === '--list') {
    const {listVms} = await import(dist('services/vm-service.js'))
    const rows = await listVms(ctx, {})
    mark(`listVms (DB query${rows.length ? ', runtime list calls' : ''})`)
    await repo.close()
    mark('DB close')
    return done(String(rows.length))
  }
  const vm = await repo.resolve(vmId)
  mark('DB query: resolve the VM')
  const reg = await ctx.runtimes()
  const {runtime} = reg.find(vm.language)
  mark('agent:runtimes hook (loads 4 runtime plugins)')
  const {launcher} = await import(dist('launchers/select.js'))
  const l = await launcher(vm.launcher)
  mark(`import launcher module (${vm.launcher}: oci.js, disk, network)`)
  const lctx = launchContext(ctx, runtime.env, undefined)
  const res = await l.exec(vm, lctx, {argv: ['/bin/sh', '-c', 'echo hi'], timeoutSec: 30, output: 'capture'})
  mark(`${vm.launcher === 'gvisor' ? 'runsc' : 'runc'} exec through agent-init (the sandboxed work)`)
  await repo.close()
  mark('DB close')
  done(res.stdout)
}
