#!/usr/bin/env node
// `npm run bench`: measures agent against the raw runtimes on this machine, in this run.
// Every figure is the median of N timed runs after a warm-up, interleaved with its raw baseline
// so both see the same machine noise. Writes bench/results/latest.{json,md}, bench/REPORT.md and
// the README's performance section (between <!-- bench:start --> and <!-- bench:end -->).
//
// Environment:
//   BENCH_COLD_IMAGES=1   also time cold image builds in a private store (adds ~5 min or more)
//   BENCH_ONLY=a,b        only these sections: startup, images, create, exec, breakdown, fanout, platforms
//                         (BENCH_ONLY=platforms also splices its table into bench/REPORT.md)
//                         channel: the exec channel (issue 14); BENCH_ONLY=channel splices its table likewise
//                         cli: CLI speed (issue 18, test/bench/cli-bench.mjs): each target figure with its raw
//                         baseline, the load and the target (met/missed); parts: cli-version, cli-create,
//                         cli-exec, cli-serve, cli-list, cli-fanout. Splices its table into the README (between
//                         <!-- bench-cli:start/end -->) and bench/REPORT.md (<!-- cli:start/end -->). Every run
//                         that measures it appends its medians to bench/results/history.jsonl (git-ignored).
//                         serve: agent serve through the e2b SDK (issue 13; test/bench/serve-bench.mjs); only
//                         with BENCH_ONLY=serve (not in a full run); splices its table into bench/REPORT.md
//                         (BENCH_SERVE_SANDBOXES: how many sandboxes for the memory row, default 16)
//   BENCH_QUICK=1         tiny N everywhere (a smoke test of the harness, not a measurement)
//   BENCH_FANOUT_RUNTIME  gvisor (default) or runc for the fan-out VMs
//   BENCH_BUDGET_S        time budget in seconds (default 540); the fan-out shrinks to respect it
//   AGENT_IMAGE_STORE     image store holding localhost/agent/<language> (default /var/tmp/agent-test-images)
import {execa} from 'execa'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync} from 'node:fs'
import {cpus} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {serveBench, serveSection} from './serve-bench.mjs'
import {cliBench, cliParts, cliSection} from './cli-bench.mjs'
import {
  figure,
  figuresTable,
  hostFacts,
  loadNow,
  measure,
  memAvailableKiB,
  mountsUnder,
  now,
  pool,
  round,
  run,
  sandboxMemory,
  simpleTable,
  stats,
} from './lib.mjs'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const CLI_DIR = join(ROOT, 'packages', 'cli')
const RUN_JS = join(CLI_DIR, 'bin', 'run.js')
const RSS_PRELOAD = join(ROOT, 'test', 'bench', 'rss-preload.mjs')
const PHASES_JS = join(ROOT, 'test', 'bench', 'exec-phases.mjs')
const RESULTS_DIR = join(ROOT, 'bench', 'results')
const QUICK = process.env.BENCH_QUICK === '1'
const ONLY = new Set((process.env.BENCH_ONLY ?? '').split(',').map((s) => s.trim()).filter(Boolean))
const want = (section) => ONLY.size === 0 || ONLY.has(section) || (section === 'cli' && cliParts(ONLY).size > 0)
const BUDGET_S = Number(process.env.BENCH_BUDGET_S ?? 540)
const LANGUAGES = ['python', 'node', 'ruby', 'golang']
const LAUNCHERS = ['gvisor', 'runc']
const FANOUT_SIZES = [1, 4, 16, 32]
const FANOUT_MEM = 64
const N = QUICK
  ? {startup: 3, image: 1, create: 2, exec: 4, hello: 2, helloRunc: 1, fanout: 1, fanoutLarge: 1, phases: 2, rss: 1, modules: 2, platCreate: 1, platStart: 2, platExec: 3, platInGuest: 2}
  : {startup: 10, image: 2, create: 3, exec: 10, hello: 4, helloRunc: 2, fanout: 2, fanoutLarge: 1, phases: 5, rss: 2, modules: 3, platCreate: 5, platStart: 5, platExec: 10, platInGuest: 7}
const T0 = now()
const elapsedS = () => (now() - T0) / 1000
const log = (msg) => process.stderr.write(`bench [${elapsedS().toFixed(0).padStart(3)}s] ${msg}\n`)

// ------------------------------------------------------------------ state and environment

const IMAGE_STORE = resolve(process.env.AGENT_IMAGE_STORE ?? '/var/tmp/agent-test-images')
const STATE = mkdtempSync('/var/tmp/agent-bench-')
const RAW = join(STATE, 'raw')
const RAW_ROOT = {gvisor: join(RAW, 'run', 'runsc'), runc: join(RAW, 'run', 'runc')}
const RUNTIME_BIN = {gvisor: 'runsc', runc: 'runc'}
/** Same flags agent passes to runsc (see packages/cli/src/launchers/gvisor.ts), so both run the same runtime config. */
const RUNSC_FLAGS = ['--platform=systrap', '--overlay2=none'] // agent's default platform (launchers/gvisor-version.ts)
const agentRoot = (launcher) => join(STATE, 'run', launcher) // paths.runtimeRoot(<launcher>) in state-dir.ts
const containerOf = (id) => `agent-${id}` // containerName() in launchers/oci.ts

const baseEnv = {...process.env}
for (const k of Object.keys(baseEnv)) if (k.startsWith('AGENT_') || k === 'NODE_OPTIONS') delete baseEnv[k]
const AGENT_ENV = {...baseEnv, AGENT_STATE_DIR: STATE, AGENT_IMAGE_STORE: IMAGE_STORE}
const STORE_ENV = {
  ...baseEnv,
  CONTAINERS_STORAGE_CONF: join(IMAGE_STORE, 'storage.conf'),
  CONTAINERS_REGISTRIES_CONF: join(IMAGE_STORE, 'registries.conf'),
  CONTAINERS_POLICY: join(IMAGE_STORE, 'policy.json'),
  BUILDAH_RUNTIME: 'runc',
}

/** `agent ARGS` as a user runs it (node bin/run.js: the same file the `agent` link points at). */
const agent = (args, {env, ...opts} = {}) => run('node', [RUN_JS, ...args], {env: {...AGENT_ENV, ...env}, extendEnv: false, timeout: 300_000, ...opts})
const buildah = (args, opts = {}) => run('buildah', args, {env: STORE_ENV, extendEnv: false, timeout: 300_000, ...opts})
const rawRt = (launcher, args, opts = {}) =>
  run(RUNTIME_BIN[launcher], [...(launcher === 'gvisor' ? ['--root', RAW_ROOT.gvisor, ...RUNSC_FLAGS, '--network=none'] : ['--root', RAW_ROOT.runc]), ...args], {timeout: 60_000, ...opts})
/** `runsc|runc --root <agent's root> exec <agent's container> ARGV`: the raw runtime, in agent's own sandbox. */
const rawExec = (launcher, id, argv) => run(RUNTIME_BIN[launcher], ['--root', agentRoot(launcher), 'exec', containerOf(id), ...argv], {timeout: 60_000})

// ------------------------------------------------------------------ cleanup (always, even on failure or signal)

const rawContainers = new Set() // names of raw baseline containers (runtime + buildah)
let cleaning
function cleanup() {
  cleaning ??= (async () => {
    log('cleanup: agent vm clean --all, raw containers, state dir')
    // Retried: another engineer's rebuild can leave the tree briefly unrunnable.
    for (let attempt = 1; attempt <= 4; attempt++) {
      try {
        await agent(['vm', 'clean', '--all'], {timeout: 600_000})
        break
      } catch (err) {
        log(`cleanup: agent vm clean --all failed (attempt ${attempt}): ${err.message.split('\n')[0]}`)
        if (attempt < 4) await new Promise((r) => setTimeout(r, 20_000))
        else log(`cleanup: clean up by hand: AGENT_STATE_DIR=${STATE} agent vm clean --all`)
      }
    }
    for (const name of rawContainers) await removeRaw(name).catch((e) => log(`cleanup: ${name}: ${e.message}`))
    for (const c of readdirSync('/sys/fs/cgroup')) {
      try {
        rmdirSync(join('/sys/fs/cgroup', c, 'agent-bench'))
      } catch {}
    }
    const left = mountsUnder(STATE)
    if (left.length) log(`cleanup: NOT removing ${STATE}: still mounted: ${left.join(', ')}`)
    else rmSync(STATE, {recursive: true, force: true})
  })()
  return cleaning
}
async function removeRaw(name) {
  const launcher = name.includes('-runc-') ? 'runc' : 'gvisor'
  await rawRt(launcher, ['delete', '--force', name], {ok: () => true})
  await buildah(['umount', name], {ok: () => true})
  await buildah(['rm', name], {ok: () => true})
  for (const c of ['memory', 'cpu', 'cpuacct', 'pids', 'blkio', 'devices', 'freezer', 'cpuset', 'systemd', 'unified']) {
    try {
      rmdirSync(join('/sys/fs/cgroup', c, 'agent-bench', name))
    } catch {}
  }
  rawContainers.delete(name)
}
let interrupted = false
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    if (interrupted) return
    interrupted = true
    log(`${sig}: cleaning up before exit`)
    cleanup().finally(() => process.exit(130))
  })
}

// ------------------------------------------------------------------ raw baselines

let rawSeq = 0
/** A minimal OCI spec written by the bench itself (not agent's builder): rootfs, idle process, the usual pseudo-filesystems, fresh namespaces. */
function minimalSpec(rootfs, name, launcher) {
  return {
    ociVersion: '1.0.2',
    process: {terminal: false, user: {uid: 0, gid: 0}, args: ['sleep', 'infinity'], env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], cwd: '/', noNewPrivileges: true},
    root: {path: rootfs, readonly: false},
    hostname: name,
    mounts: [
      {destination: '/proc', type: 'proc', source: 'proc'},
      {destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k']},
      {destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620']},
      {destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro']},
    ],
    linux: {
      namespaces: [{type: 'pid'}, {type: 'ipc'}, {type: 'uts'}, {type: 'mount'}, {type: 'network'}],
      ...(launcher === 'runc' ? {cgroupsPath: `/agent-bench/${name}`} : {}),
    },
  }
}

/** The raw minimum to a ready sandbox: buildah from + mount, a minimal config.json, `run --detach` of an idle process. Returns ms. */
async function rawCreate(launcher, language) {
  const name = `bench-raw-${process.pid}-${launcher === 'runc' ? 'runc' : 'runsc'}-${rawSeq++}`
  rawContainers.add(name)
  const t0 = now()
  await buildah(['from', '--signature-policy', join(IMAGE_STORE, 'policy.json'), '--pull-never', '--name', name, `localhost/agent/${language}:latest`])
  const {stdout: rootfs} = await buildah(['mount', name])
  const bundle = join(RAW, 'bundles', name)
  mkdirSync(bundle, {recursive: true})
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(minimalSpec(rootfs, name, launcher)))
  mkdirSync(RAW_ROOT[launcher], {recursive: true})
  await rawRt(launcher, ['run', '--detach', '--bundle', bundle, name], {stdio: 'ignore'})
  return {name, ms: now() - t0}
}

/** Raw teardown of what rawCreate made: delete --force, buildah umount + rm. Returns ms. */
async function rawRemove(name) {
  const t0 = now()
  await removeRaw(name)
  return now() - t0
}

// ------------------------------------------------------------------ agent helpers

const vms = new Map() // id -> {launcher, language}
let haveStrace = false
async function createVm(language, launcher, extra = [], opts = {}) {
  const {stdout, ms} = await agent(['vm', 'create', '--language', language, '--runtime', launcher, ...extra], opts)
  const id = stdout.split('\n').pop().trim()
  if (!/^[a-z]+-[0-9a-f]{8}$/.test(id)) throw new Error(`vm create printed no id: ${stdout}`)
  vms.set(id, {launcher, language})
  return {id, ms}
}
async function cleanVm(id) {
  const {ms} = await agent(['vm', 'clean', id])
  vms.delete(id)
  return ms
}

/** Peak RSS of agent processes run with the preload (KiB samples appended to a file). */
function rssFile(tag) {
  return join(STATE, `rss-${tag}.txt`)
}
function readRss(tag) {
  try {
    return readFileSync(rssFile(tag), 'utf8').split('\n').filter(Boolean).map((k) => Number(k) / 1024)
  } catch {
    return []
  }
}
const rssEnv = (tag) => ({NODE_OPTIONS: `--import=${pathToFileURL(RSS_PRELOAD).href}`, BENCH_RSS_FILE: rssFile(tag)})

/** Phase durations from a --log-file (JSON lines with ms timestamps): each line's time until the next line. */
function logSegments(file, startMs, endMs) {
  const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
  const seg = []
  let prevT = startMs
  let prevLabel = 'process start, node + oclif, command init (to first log line)'
  for (const l of lines) {
    const t = Date.parse(l.timestamp)
    seg.push([prevLabel, t - prevT])
    prevT = t
    prevLabel = segLabel(l.message)
  }
  seg.push([prevLabel, endMs - prevT])
  // merge repeated labels, saying how many times each happened
  const merged = new Map()
  const count = new Map()
  for (const [k, v] of seg) {
    merged.set(k, (merged.get(k) ?? 0) + v)
    count.set(k, (count.get(k) ?? 0) + 1)
  }
  return [...merged].map(([k, v]) => [count.get(k) > 1 ? `${k} (×${count.get(k)}, total)` : k, v])
}
function segLabel(msg) {
  if (msg.startsWith('agent vm:create')) return 'command init to first command: sqlite3 load, DB open, plugin hook, launcher availability (runsc/runc --version)'
  if (msg.startsWith('agent ')) return 'command init to first command logged (module loads, DB open, plugin hook)'
  const step = /^[a-z]+-[0-9a-f]{8}: (.*)$/.exec(msg)
  if (step) return `step: ${step[1]} (bookkeeping before its first command)`
  if (msg.startsWith('image ')) return 'after image choice: ensureImage'
  if (msg.startsWith('created ')) return 'after "created": DB close, exit'
  const words = msg.split(' ')
  if (words[0] === 'buildah') return `buildah ${words[1]}${words[1] === 'inspect' ? ` ${words[3]}` : ''}`
  return words[0].replace(/^.*\//, '')
}
function medianSegments(runs) {
  const keys = []
  for (const r of runs) for (const [k] of r) if (!keys.includes(k)) keys.push(k)
  return keys.map((k) => [k, stats(runs.map((r) => r.find(([kk]) => kk === k)?.[1] ?? 0)).median])
}

/**
 * Counts the programs a command starts (strace -f), measured, not guessed. `direct` are the
 * processes agent's own node process forks (each labelled with the chain of programs that
 * process execs, e.g. unshare→sh→buildah); `all` counts every successful execve, including
 * what the runtimes start internally (runc init, the guest command under runc).
 */
async function countSpawns(args) {
  const out = join(STATE, `strace-${Date.now()}.txt`)
  // strace -f also follows what outlives agent (the detached sandbox of `vm create`), so it is
  // stopped (it detaches) as soon as agent's own process has exited.
  const proc = execa('strace', ['-f', '-q', '-e', 'trace=execve,clone,clone3,fork,vfork', '-e', 'signal=none', '-o', out, 'node', RUN_JS, ...args], {env: AGENT_ENV, extendEnv: false, reject: false, stdin: 'ignore', timeout: 300_000})
  const rootExited = () => {
    try {
      const text = readFileSync(out, 'utf8')
      const root = /^(\d+) /.exec(text)?.[1]
      return root !== undefined && new RegExp(`^${root} \\+\\+\\+ (exited|killed)`, 'm').test(text)
    } catch {
      return false
    }
  }
  let finished = false
  proc.finally(() => (finished = true))
  while (!finished && !rootExited()) await new Promise((r) => setTimeout(r, 100))
  if (!finished) proc.kill('SIGTERM')
  const res = await proc
  const stdout = String(res.stdout ?? '').trim()
  const lines = readFileSync(out, 'utf8').split('\n')
  rmSync(out, {force: true})
  const parentProc = new Map() // pid -> pid of the process (not thread) that created it
  const tgid = new Map() // pid -> its thread-group leader
  const pendingFlags = new Map()
  const chains = new Map() // pid -> programs it exec'd, in order
  const all = {}
  let root
  for (const line of lines) {
    const m = /^(\d+)\s+(.*)$/.exec(line)
    if (!m) continue
    const pid = Number(m[1])
    const rest = m[2]
    root ??= pid
    if (!tgid.has(pid)) tgid.set(pid, pid)
    const ex = /^execve\("([^"]+)"/.exec(rest)
    if (ex) {
      if (/= -1 /.test(rest)) continue
      const bin = ex[1].replace(/^.*\//, '')
      all[bin] = (all[bin] ?? 0) + 1
      chains.set(pid, [...(chains.get(pid) ?? []), bin])
      continue
    }
    const unfinished = /^(clone3?|v?fork)\((.*)<unfinished \.\.\.>$/.exec(rest)
    if (unfinished) {
      pendingFlags.set(pid, unfinished[2])
      continue
    }
    const done = /^(?:<\.\.\. )?(clone3?|v?fork)(?: resumed>)?(.*)= (\d+)$/.exec(rest)
    if (done) {
      const child = Number(done[3])
      const flags = (pendingFlags.get(pid) ?? '') + done[2]
      pendingFlags.delete(pid)
      const thread = /CLONE_THREAD/.test(flags)
      const leader = tgid.get(pid) ?? pid
      tgid.set(child, thread ? leader : child)
      parentProc.set(child, thread ? parentProc.get(leader) : leader)
    }
  }
  const direct = {}
  for (const [pid, chain] of chains) {
    if (pid === root || parentProc.get(pid) !== root) continue
    const label = chain.join('→')
    direct[label] = (direct[label] ?? 0) + 1
  }
  return {direct, all, stdout}
}

// ------------------------------------------------------------------ the run

const result = {
  schema: 1,
  host: null,
  options: {n: N, quick: QUICK, only: [...ONLY], coldImages: process.env.BENCH_COLD_IMAGES === '1', imageStore: IMAGE_STORE, budgetS: BUDGET_S},
  figures: [],
  memory: [],
  breakdown: {},
  spawns: {},
  notes: [],
  coldImages: null,
  platforms: null,
  channel: null,
  serve: null,
  cli: null,
  totalS: null,
}
const add = (f) => {
  result.figures.push(f)
  const a = f.agent
  log(`${f.name}: ${a ? `${a.median} ms (N=${a.n})` : '—'}${f.raw ? ` vs ${f.rawLabel} ${f.raw.median} ms -> ${f.ratio}x, +${f.overheadMs} ms` : ''}`)
}
const note = (s) => {
  result.notes.push(s)
  log(`note: ${s}`)
}

async function main() {
  result.host = await hostFacts()
  log(`state ${STATE}, image store ${IMAGE_STORE}, ${result.host.nproc} cores, ${result.host.memoryGiB} GiB, ${result.host.runsc}, ${result.host.runc}`)
  const {stdout: names} = await buildah(['images', '--format', '{{.Name}}:{{.Tag}}'])
  const languages = LANGUAGES.filter((l) => names.split('\n').includes(`localhost/agent/${l}:latest`))
  for (const l of LANGUAGES) if (!languages.includes(l)) note(`image localhost/agent/${l}:latest is not in ${IMAGE_STORE}: ${l} skipped (build it with scripts/build-images.sh)`)
  if (!languages.includes('python')) throw new Error(`python image missing from ${IMAGE_STORE}; run AGENT_IMAGE_STORE=${IMAGE_STORE} bash scripts/build-images.sh`)

  // Initialise the state dir (DB + migrations) so start-up figures see the steady state, not a first run.
  await agent(['vm', 'list'])
  haveStrace = (await run('strace', ['-V'], {ok: () => true})).res.exitCode === 0
  if (!haveStrace) note('strace is not installed: process spawns were not counted')

  if (want('startup')) await startup()
  if (want('images')) await images(languages)
  if (want('create')) await create()
  // Fan-out before exec/hello: its 16/32-VM points are the dearest, and the per-language runc
  // VMs after it are the part that gives way when the budget is short.
  if (want('fanout')) await fanout()
  if (want('exec') || want('breakdown')) await execAndHello(languages)
  if (want('platforms')) await platforms()
  if (want('channel')) await channel()
  if (ONLY.has('serve')) result.serve = await serveBench({RUN_JS, CLI_DIR, AGENT_ENV, STATE, QUICK, log, rawExecGvisor: (id, argv) => rawExec('gvisor', id, argv)})
  if (want('cli')) await cliSpeed()
}

// ---- CLI speed (issue 18): test/bench/cli-bench.mjs
async function cliSpeed() {
  log('cli speed')
  const section = await cliBench({
    parts: cliParts(ONLY.size ? ONLY : new Set(['cli'])), QUICK, ROOT, RUN_JS, STATE, AGENT_ENV, RUNTIME_BIN, log, note, run, agent,
    rawExec, rawCreate, rawRt, rawRemove, createVm, cleanVm, vms,
  })
  result.cli = section
  mkdirSync(RESULTS_DIR, {recursive: true})
  const history = join(RESULTS_DIR, 'history.jsonl')
  const line = {date: new Date().toISOString(), commit: gitHead(), quick: QUICK, nproc: cpus().length, loadStart: section.loadStart, loadEnd: section.loadEnd, medians: Object.fromEntries(section.figures.map((f) => [f.name.trim(), {agent: f.agent?.median ?? null, raw: f.raw?.median ?? null, load1: f.load[0], ...(f.limitMs != null ? {limit: f.limitMs, met: f.met} : {}), ...(f.cpu ? {cpu: f.cpu} : {})}]))}
  writeFileSync(history, JSON.stringify(line) + '\n', {flag: 'a'})
  log(`cli: medians appended to ${history}`)
}

function gitHead() {
  if (process.env.BENCH_COMMIT) return process.env.BENCH_COMMIT.slice(0, 12) // a tree exported without .git
  try {
    return readFileSync(join(ROOT, '.git', 'HEAD'), 'utf8').trim().replace(/^ref: (.*)$/, (_, ref) => readFileSync(join(ROOT, '.git', ref), 'utf8').trim()).slice(0, 12)
  } catch {
    return null
  }
}

// ---- 1. CLI start-up
async function startup() {
  log('start-up')
  const [nodeS, versionS, listS] = await measure(
    [() => run('node', ['-e', '0']), () => agent(['--version']), () => agent(['vm', 'list'])],
    {n: N.startup, warmup: 2},
  )
  add(figure('startup', 'agent --version', versionS, nodeS, '`node -e 0`'))
  add(figure('startup', 'agent vm list (empty state)', listS, nodeS, '`node -e 0`'))

  // Where start-up goes: the phases exec-phases.mjs measures, in one process each.
  result.breakdown.bare = await bareNode()
  result.breakdown.startup = await phaseRuns(['--startup-only'])
  result.breakdown.list = await phaseRuns(['--list'])
  const mod = (spec, cwd = CLI_DIR) => () => run('node', ['--input-type=module', '-e', `await import(${JSON.stringify(spec)})`], {cwd})
  const rows = [
    ['@oclif/core', mod('@oclif/core')],
    ['dist/vendor/oclif-core.js (@oclif/core bundled by scripts/bundle.mjs)', mod(pathToFileURL(join(CLI_DIR, 'dist/vendor/oclif-core.js')).href)],
    ['typeorm', mod('typeorm')],
    ['sqlite3', mod('sqlite3')],
    ['dist/state/vm-repository.js (sqlite3, column map, migration list)', mod(pathToFileURL(join(CLI_DIR, 'dist/state/vm-repository.js')).href)],
    ['listr2', mod('listr2')],
    ['winston', mod('winston')],
  ]
  const res = await measure([() => run('node', ['-e', '0']), ...rows.map(([, f]) => f)], {n: N.modules, warmup: 1})
  result.breakdown.moduleLoads = {n: N.modules, baseline: res[0].median, rows: rows.map(([k], i) => [`import ${k}`, res[i + 1].median])}
  if (haveStrace) {
    result.spawns['agent --version'] = await countSpawns(['--version'])
    result.spawns['agent vm list (no VMs)'] = await countSpawns(['vm', 'list'])
  }
}

/** Bare node: how much of a process's wall time (seen by the parent) its own clock does not see (exec, bootstrap before timeOrigin, exit). */
async function bareNode() {
  const gap = []
  for (let i = 0; i < N.phases; i++) {
    const {stdout, ms} = await run('node', ['-e', 'process.stdout.write(String(performance.now()))'])
    gap.push(ms - Number(stdout))
  }
  return {n: N.phases, outsideMs: stats(gap).median}
}

/** Runs exec-phases.mjs N times; medians per phase, plus what the parent sees beyond the last phase (process exit). */
async function phaseRuns(args) {
  const runs = []
  const walls = []
  for (let i = 0; i < N.phases; i++) {
    const {stdout, ms} = await run('node', [PHASES_JS, CLI_DIR, ...args], {env: AGENT_ENV, extendEnv: false})
    runs.push(JSON.parse(stdout).phases)
    walls.push(ms)
  }
  const phases = medianSegments(runs)
  const wall = stats(walls).median
  const sum = phases.reduce((a, [, v]) => a + v, 0)
  phases.push([`spawn + process exit seen by the parent (wall − phases; a bare node process: ${result.breakdown.bare?.outsideMs ?? '?'} ms)`, round(wall - sum)])
  return {n: N.phases, wallMedian: wall, phases}
}

// ---- 2. images: cached rebuild always, cold builds only with BENCH_COLD_IMAGES=1
async function images(languages) {
  log('images (cached rebuild)')
  const hostDir = join(IMAGE_STORE, 'host-var-lib-containers')
  const imageLogs = []
  for (const lang of languages) {
    const recipe = join(ROOT, 'plugins', lang, 'Containerfile')
    // Raw: the same `buildah build --layers` agent runs, in the same private mount namespace agent
    // uses so that neither writes the host's /var/lib/containers blob cache.
    const rawBuild = () =>
      run(
        'unshare',
        ['--mount', '--propagation', 'private', '--', 'sh', '-c', 'mount --bind "$1" /var/lib/containers; shift; exec "$@"', 'sh', hostDir,
          'buildah', 'build', '--signature-policy', join(IMAGE_STORE, 'policy.json'), '--layers', '--force-rm', '--network', 'host', '--pull-never', '-f', recipe, '-t', `localhost/agent/${lang}:latest`, dirname(recipe)],
        {env: STORE_ENV, extendEnv: false, timeout: 300_000},
      )
    const file = join(STATE, `image-${lang}.log`)
    const start = Date.now()
    await agent(['image', 'build', lang, '--log-file', file]) // also the warm-up
    imageLogs.push(logSegments(file, start, Date.now()))
    const [a, r] = await measure([() => agent(['image', 'build', lang]), rawBuild], {n: N.image, warmup: 0})
    // (the --log-file run above was the warm-up)
    add(figure('images', `image build ${lang} (cached rebuild)`, a, r, '`buildah build --layers` (cached)'))
  }
  result.breakdown.image = {n: imageLogs.length, segments: medianSegments(imageLogs)}
  const coldFile = join(RESULTS_DIR, 'cold-images.json')
  if (process.env.BENCH_COLD_IMAGES === '1') {
    log('images (cold builds in a private store: several minutes)')
    const store = join(STATE, 'cold-store')
    const rows = []
    try {
      for (const lang of languages) {
        const {ms} = await agent(['image', 'build', lang], {env: {AGENT_IMAGE_STORE: store}, timeout: 1_800_000})
        rows.push({language: lang, ms: round(ms), includesBase: rows.length === 0})
        log(`cold build ${lang}: ${(ms / 1000).toFixed(1)} s${rows.length === 1 ? ' (includes the Debian base)' : ''}`)
      }
    } finally {
      await run('buildah', ['rmi', '--all', '--force'], {env: {...STORE_ENV, CONTAINERS_STORAGE_CONF: join(store, 'storage.conf')}, extendEnv: false, ok: () => true, timeout: 300_000})
      if (!mountsUnder(store).length) rmSync(store, {recursive: true, force: true})
    }
    result.coldImages = {fromThisRun: true, date: new Date().toISOString(), rows}
    mkdirSync(RESULTS_DIR, {recursive: true})
    writeFileSync(coldFile, JSON.stringify(result.coldImages, null, 2) + '\n')
  } else if (existsSync(coldFile)) {
    result.coldImages = {...JSON.parse(readFileSync(coldFile, 'utf8')), fromThisRun: false}
  }
}

// ---- 3. create (image cached) and clean, per launcher
async function create() {
  for (const launcher of LAUNCHERS) {
    log(`create/clean ${launcher}`)
    const agentCreate = [], rawCreateMs = [], agentClean = [], rawRemoveMs = []
    for (let i = 0; i < N.create + 1; i++) {
      const {id, ms} = await createVm('python', launcher)
      const r = await rawCreate(launcher, 'python')
      const cms = await cleanVm(id)
      const rrm = await rawRemove(r.name)
      if (i === 0) continue // warm-up
      agentCreate.push(ms)
      rawCreateMs.push(r.ms)
      agentClean.push(cms)
      rawRemoveMs.push(rrm)
    }
    add(figure('create', `vm create python (${launcher}, image cached)`, stats(agentCreate), stats(rawCreateMs), `buildah from+mount, config.json, \`${RUNTIME_BIN[launcher]} run --detach\``))
    add(figure('create', `vm clean (${launcher})`, stats(agentClean), stats(rawRemoveMs), `\`${RUNTIME_BIN[launcher]} delete --force\`, buildah umount+rm`))
  }
}

// ---- 4. exec latency, hello per language, agent RSS, idle VM memory, and the breakdown
async function execAndHello(languages) {
  log('creating one VM per language per launcher (with --log-file for the create breakdown, and the RSS probe)')
  const byKey = new Map()
  const createLogs = {gvisor: [], runc: []}
  // runc VMs for languages other than python only when the budget allows ("per launcher if time allows").
  const runcAll = elapsedS() < BUDGET_S - 200
  if (!runcAll) note(`hello under runc measured for python only: ${elapsedS().toFixed(0)} s of the ${BUDGET_S} s budget were used before this section`)
  for (const launcher of LAUNCHERS) {
    for (const lang of launcher === 'runc' && !runcAll ? ['python'] : languages) {
      const file = join(STATE, `create-${lang}-${launcher}.log`)
      const start = Date.now()
      const {id} = await createVm(lang, launcher, ['--log-file', file], {env: rssEnv('create')})
      createLogs[launcher].push(logSegments(file, start, Date.now()))
      byKey.set(`${lang}/${launcher}`, id)
    }
  }
  result.breakdown.create = Object.fromEntries(Object.entries(createLogs).map(([k, runs]) => [k, {n: runs.length, segments: medianSegments(runs)}]))

  const rawHelloArgv = {}
  for (const lang of languages) rawHelloArgv[lang] = (await import(pathToFileURL(join(ROOT, 'plugins', lang, 'dist', 'runtime.js')).href)).runtime.hello

  let lost = 0
  const check = (label) => (r) => {
    if (!/\bhi\b/.test(r.stdout)) {
      lost++
      log(`warning: ${label} printed ${JSON.stringify(r.stdout)} instead of "hi"`)
    }
    return r.ms
  }
  for (const launcher of LAUNCHERS) {
    const id = byKey.get(`python/${launcher}`)
    if (!want('exec')) break
    log(`exec latency (${launcher})`)
    const bin = RUNTIME_BIN[launcher]
    const [a, raw, viaInit] = await measure(
      [
        async () => check(`agent exec (${launcher})`)(await agent(['vm', 'exec', '--vm', id, '--cmd', 'echo hi'])),
        async () => check(`${bin} exec`)(await rawExec(launcher, id, ['echo', 'hi'])),
        async () => check(`${bin} exec agent-init`)(await rawExec(launcher, id, ['/.agent/agent-init', 'exec', '--timeout', '30', '--tag', 'bench', '--', '/bin/sh', '-c', 'echo hi'])),
      ],
      {n: N.exec, warmup: 2},
    )
    add(figure('exec', `vm exec --cmd 'echo hi' (${launcher})`, a, raw, `\`${bin} --root R exec <ctr> echo hi\``))
    result.breakdown[`exec-${launcher}`] = {rawExec: raw.median, rawExecViaInit: viaInit.median, agent: a.median}
    // agent's own peak RSS during exec
    for (let i = 0; i < N.rss; i++) await agent(['vm', 'exec', '--vm', id, '--cmd', 'echo hi'], {env: rssEnv(`exec-${launcher}`)})
  }
  if (lost) note(`${lost} exec runs did not print "hi" (see the log): output was lost`)

  if (want('exec')) {
    for (const launcher of LAUNCHERS) {
      log(`hello per language (${launcher})`)
      for (const lang of languages) {
        const id = byKey.get(`${lang}/${launcher}`)
        if (!id) continue
        await rawExec(launcher, id, rawHelloArgv[lang]) // warm-up: the interpreter's pages into the cache, for both
        const [a, raw] = await measure(
          [() => agent(['vm', 'exec', '--vm', id, '--hello']).then((r) => r.ms), () => rawExec(launcher, id, rawHelloArgv[lang]).then((r) => r.ms)],
          {n: launcher === 'runc' ? N.helloRunc : N.hello, warmup: 0},
        )
        add(figure('hello', `vm exec --hello ${lang} (${launcher})`, a, raw, `\`${RUNTIME_BIN[launcher]} exec <ctr> <hello argv>\``))
      }
    }
    // Memory: agent's peak RSS, and what each idle sandbox holds on the host.
    const rssRow = (label, tag) => {
      const s = stats(readRss(tag))
      if (s) result.memory.push({figure: label, unit: 'MiB', ...s})
    }
    rssRow('agent process peak RSS: vm create (per-language VMs, both launchers)', 'create')
    for (const launcher of LAUNCHERS) rssRow(`agent process peak RSS: vm exec --cmd (${launcher})`, `exec-${launcher}`)
    await new Promise((r) => setTimeout(r, 2000))
    for (const launcher of LAUNCHERS) {
      for (const lang of languages) {
        if (!byKey.has(`${lang}/${launcher}`)) continue
        const m = sandboxMemory(`agent/${byKey.get(`${lang}/${launcher}`)}`)
        if (m) result.memory.push({figure: `idle VM ${lang} (${launcher}, --mem 256): PSS of its ${m.processes} processes`, unit: 'MiB', median: m.pssMiB, n: 1, cgroupMiB: m.cgroupMiB, cgroupAnonMiB: m.cgroupAnonMiB, rssMiB: m.rssMiB})
      }
    }
  }

  if (want('breakdown')) await breakdown(byKey.get('python/gvisor'), byKey.get('python/runc'))
  log('cleaning the per-language VMs')
  await agent(['vm', 'clean', '--all'])
  vms.clear()
}

async function breakdown(gvisorId, runcId) {
  log('breakdown: exec phases in one process, spawn counts')
  result.breakdown.bare ??= await bareNode()
  for (const [launcher, id] of [['gvisor', gvisorId], ['runc', runcId]]) result.breakdown[`execPhases-${launcher}`] = await phaseRuns([id])
  if (!haveStrace) return
  const sp = result.spawns
  sp[`agent vm list (${vms.size} running VMs, 2 launchers)`] = await countSpawns(['vm', 'list'])
  sp['agent vm exec --cmd (gvisor)'] = await countSpawns(['vm', 'exec', '--vm', gvisorId, '--cmd', 'echo hi'])
  sp['agent vm exec --cmd (runc)'] = await countSpawns(['vm', 'exec', '--vm', runcId, '--cmd', 'echo hi'])
  // runsc's ptrace platform cannot run under strace (it ptraces its own stubs), so create and
  // clean are counted with runc; agent's own steps are the same for gvisor apart from the binary.
  const created = await countSpawns(['vm', 'create', '--language', 'python', '--runtime', 'runc'])
  const id = created.stdout.split('\n').pop().trim()
  vms.set(id, {launcher: 'runc', language: 'python'})
  sp['agent vm create (runc)'] = created
  sp['agent vm clean (runc)'] = await countSpawns(['vm', 'clean', id])
  vms.delete(id)
}

// ---- 5. fan-out: exec --hello --all across 1, 4, 16, 32 python VMs
async function fanout() {
  let launcher = process.env.BENCH_FANOUT_RUNTIME ?? 'gvisor'
  const concurrency = Math.min(2 * cpus().length, 8) // agent's default --concurrency (README)
  const {runtime} = await import(pathToFileURL(join(ROOT, 'plugins', 'python', 'dist', 'runtime.js')).href)
  const ids = []
  const memBefore = memAvailableKiB()
  for (const size of QUICK ? [1, 4] : FANOUT_SIZES) {
    // Budget: predict this point from what this run measured (create, and exec of the last point);
    // if gvisor would blow it, the large points run on runc, and a point that cannot fit is skipped.
    const createS = (result.figures.find((f) => f.name.startsWith(`vm create python (${launcher}`))?.agent?.median ?? 3000) / 1000
    const predictS = (n) => ((n - ids.length) * createS) / 1.5 + n * 0.3 * ((size >= 16 ? N.fanoutLarge : N.fanout) + 1) + (n * createS) / 3
    const reserve = want('exec') || want('breakdown') ? 200 : 0 // exec, hello and the breakdown still to come
    if (launcher === 'gvisor' && size >= 16 && elapsedS() + predictS(FANOUT_SIZES.at(-1)) + reserve > BUDGET_S) {
      note(`fan-out ${size}+ VMs switched to runc to stay within the ${BUDGET_S}s budget (elapsed ${elapsedS().toFixed(0)}s)`)
      log('cleaning gvisor fan-out VMs')
      await agent(['vm', 'clean', '--all'])
      ids.length = 0
      vms.clear()
      launcher = 'runc'
    }
    if (elapsedS() + predictS(size) + reserve > BUDGET_S + 30) {
      note(`fan-out ${size} VMs skipped: predicted ${predictS(size).toFixed(0)} s would overrun the ${BUDGET_S} s budget at ${elapsedS().toFixed(0)} s`)
      break
    }
    log(`fan-out: creating VMs up to ${size} (${launcher}, --mem ${FANOUT_MEM})`)
    const missing = size - ids.length
    const made = await pool(Array.from({length: missing}), 2, () => createVm('python', launcher, ['--mem', String(FANOUT_MEM)]))
    ids.push(...made.map((m) => m.id))
    const rssTag = `fanout-${size}`
    const [a, raw] = await measure(
      [
        async () => {
          const {ms, stdout} = await agent(['vm', 'exec', '--hello', '--all'], {env: rssEnv(rssTag)})
          const got = (stdout.match(/hello from python/g) ?? []).length
          if (got !== size) log(`warning: fan-out ${size}: ${got} hellos`)
          return ms
        },
        async () => {
          const t0 = now()
          await pool(ids, concurrency, (id) => rawExec(launcher, id, runtime.hello))
          return now() - t0
        },
      ],
      {n: size >= 16 ? N.fanoutLarge : N.fanout, warmup: size >= 16 ? 0 : 1},
    )
    add(figure('fanout', `vm exec --hello --all, ${size} VM${size > 1 ? 's' : ''} (${launcher}) total`, a, raw, `${size}x \`${RUNTIME_BIN[launcher]} exec\`, ${concurrency} at a time`))
    const per = (s) => s && {...s, median: round(s.median / size), min: round(s.min / size), max: round(s.max / size), samples: s.samples.map((x) => round(x / size))}
    add(figure('fanout', `  … per VM (${size} VMs)`, per(a), per(raw), 'same, per VM'))
    const rs = stats(readRss(rssTag))
    if (rs) result.memory.push({figure: `agent process peak RSS: vm exec --hello --all, ${size} VMs (${launcher})`, unit: 'MiB', ...rs})
  }
  await new Promise((r) => setTimeout(r, 2000))
  const per = ids.map((id) => sandboxMemory(`agent/${id}`)).filter(Boolean)
  if (per.length) {
    const s = (k) => stats(per.map((m) => m[k]))
    result.memory.push({figure: `idle VM python (${launcher}, --mem ${FANOUT_MEM}): PSS of its processes, over ${per.length} VMs`, unit: 'MiB', ...s('pssMiB'), cgroupMiB: s('cgroupMiB').median, rssMiB: s('rssMiB').median})
    const delta = (memBefore - memAvailableKiB()) / 1024 / ids.length
    result.memory.push({figure: `host MemAvailable drop per idle VM (${ids.length} python VMs, ${launcher}; noisy: shared machine)`, unit: 'MiB', median: round(delta), n: 1})
  }
  log('fan-out: cleaning')
  const {ms} = await agent(['vm', 'clean', '--all'])
  note(`vm clean --all of ${ids.length} VMs took ${(ms / 1000).toFixed(1)} s`)
  vms.clear()
}

// ---- 6. gVisor platforms: ptrace against systrap (runc alongside as the no-sentry reference)
// In-guest figures are timed inside the guest (date +%s%N / perf_counter), so they hold the
// platform's own cost without agent's or the runtime's exec overhead.
const FORK_LOOPS = 200
const GUEST_FORK = `s=$(date +%s%N); i=0; while [ $i -lt ${FORK_LOOPS} ]; do /bin/true; i=$((i+1)); done; e=$(date +%s%N); echo $(( (e - s) / 1000 ))`
const GUEST_CPU = 'python3 -c "import time\nt = time.perf_counter()\ns = 0\nfor i in range(3000000): s += i\nprint((time.perf_counter() - t) * 1000)"'
async function platforms() {
  const cols = [
    {key: 'ptrace', launcher: 'gvisor', extra: ['--gvisor-platform', 'ptrace']},
    {key: 'systrap', launcher: 'gvisor', extra: ['--gvisor-platform', 'systrap']},
    {key: 'runc', launcher: 'runc', extra: []},
  ]
  const load = []
  const sampleLoad = (at) => load.push({at, elapsedS: round(elapsedS()), loadavg: loadNow()})
  sampleLoad('start')
  log('platforms: vm create (boot from a cached image), interleaved ptrace / systrap / runc')
  const created = Object.fromEntries(cols.map((c) => [c.key, []]))
  const createFns = cols.map((c) => async () => {
    const {id, ms} = await createVm('python', c.launcher, c.extra)
    created[c.key].push(id)
    return ms
  })
  const create = await measure(createFns, {n: N.platCreate, warmup: 1})
  sampleLoad('after create')
  // Keep one VM per column; clean the rest (cleaning is not what is measured).
  const ids = {}
  for (const c of cols) {
    ids[c.key] = created[c.key].pop()
    for (const id of created[c.key]) await cleanVm(id)
  }
  for (const c of cols.filter((x) => x.launcher === 'gvisor')) {
    const p = join(STATE, 'vms', ids[c.key], 'gvisor-platform')
    const recorded = existsSync(p) ? readFileSync(p, 'utf8').trim() : 'none'
    if (recorded !== c.key) throw new Error(`VM ${ids[c.key]} was asked for ${c.key} but records ${recorded}`)
  }
  log('platforms: vm stop + vm start (timed: start, i.e. boot of an existing VM)')
  const start = await measure(
    cols.map((c) => async () => {
      await agent(['vm', 'stop', ids[c.key]])
      return (await agent(['vm', 'start', ids[c.key]])).ms
    }),
    {n: N.platStart, warmup: 0},
  )
  sampleLoad('after start')
  log("platforms: vm exec --cmd 'true'")
  const exec = await measure(cols.map((c) => async () => (await agent(['vm', 'exec', '--vm', ids[c.key], '--cmd', 'true'])).ms), {n: N.platExec, warmup: 2})
  sampleLoad('after exec')
  const inGuest = (script, perUnit) => async (id) => {
    const {stdout} = await agent(['vm', 'exec', '--vm', id, '--timeout', '120', '--cmd', script])
    const x = Number(stdout.trim().split('\n').pop())
    if (!Number.isFinite(x)) throw new Error(`in-guest timing printed ${JSON.stringify(stdout)}`)
    return perUnit(x)
  }
  log(`platforms: fork+exec of /bin/true inside the guest (${FORK_LOOPS} per sample)`)
  const forkOne = inGuest(GUEST_FORK, (us) => us / FORK_LOOPS / 1000)
  const fork = await measure(cols.map((c) => () => forkOne(ids[c.key])), {n: N.platInGuest, warmup: 1})
  sampleLoad('after fork+exec')
  log('platforms: CPU-bound loop inside the guest (python, 3M additions)')
  const cpuOne = inGuest(GUEST_CPU, (ms) => ms)
  const cpu = await measure(cols.map((c) => () => cpuOne(ids[c.key])), {n: N.platInGuest, warmup: 1})
  sampleLoad('end')
  for (const c of cols) await cleanVm(ids[c.key])
  const row = (name, unit, st) => ({name, unit, ptrace: st[0], systrap: st[1], runc: st[2], ratio: st[0] && st[1] ? round(st[1].median / st[0].median, 2) : null})
  result.platforms = {
    runsc: result.host.runsc,
    rows: [
      row('vm create python (image cached): boot included', 'ms', create),
      row('vm start (boot of a stopped VM)', 'ms', start),
      row("vm exec --cmd 'true'", 'ms', exec),
      row('fork+exec of /bin/true inside the guest, per call', 'ms', fork),
      row('CPU-bound loop inside the guest (python, 3M additions)', 'ms', cpu),
    ],
    load,
  }
  for (const r of result.platforms.rows) log(`platforms: ${r.name}: ptrace ${r.ptrace?.median} / systrap ${r.systrap?.median} / runc ${r.runc?.median} ${r.unit} (systrap/ptrace ${r.ratio}x)`)
}

// ---- 7. The exec channel (issue 14): agent-init's socket against the runtime's own exec, in
// the same VMs and the same run. The host side is the CLI's own module (dist/…/guest-channel.js).
// In-guest rows are timed inside the guest (date +%s%N around a loop), the floor no exec can beat.
const CHANNEL_N = QUICK ? {ping: 20, exec: 4, inGuest: 2, cli: 3, concurrent: 2} : {ping: 200, exec: 20, inGuest: 5, cli: 10, concurrent: 5}
const IN_GUEST_LOOPS = {'/bin/true': 100, 'bash -l -c true': 30}
const inGuestLoop = (cmd, loops) => `s=$(date +%s%N); i=0; while [ $i -lt ${loops} ]; do ${cmd}; i=$((i+1)); done; e=$(date +%s%N); echo $(( (e - s) / 1000 ))`

async function channel() {
  const mod = await import(pathToFileURL(join(CLI_DIR, 'dist', 'launchers', 'guest-channel.js')).href)
  const load = [{at: 'start', loadavg: loadNow()}]
  const ids = {}
  for (const l of LAUNCHERS) ids[l] = (await createVm('python', l, ['--mem', '256'])).id
  const out = {launchers: {}, load}
  for (const l of LAUNCHERS) {
    const id = ids[l]
    const sock = mod.channelSocketPath(join(STATE, 'vms', id))
    /** One command on a connection; returns the exit report and stdout. */
    const onChannel = async (c, argv) => {
      let stdout = ''
      const e = await c.exec({argv, timeoutMs: 120_000}, {onStdout: (b) => (stdout += b)}).done
      if (e.reason !== 'exit' || e.code !== 0) throw new Error(`${argv.join(' ')} in ${id}: ${JSON.stringify(e)}`)
      return {e, stdout}
    }
    const fresh = async (argv) => {
      const t0 = now()
      const r = await onChannel(await mod.openChannel(sock), argv)
      return {ms: now() - t0, guestMs: r.e.guestMs}
    }
    log(`channel ${l}: ping round trip on an open connection (N=${CHANNEL_N.ping})`)
    const c = await mod.openChannel(sock)
    for (let i = 0; i < 10; i++) await c.ping()
    const pings = []
    for (let i = 0; i < CHANNEL_N.ping; i++) pings.push(await c.ping())
    c.close()
    const rows = {ping: stats(pings)}
    for (const [label, argv] of [
      ['/bin/true', ['/bin/true']],
      ['bash -l -c true', ['/bin/bash', '-l', '-c', 'true']],
    ]) {
      log(`channel ${l}: ${label}: over the channel (new connection; ready connection), agent-init's own fork-to-reap, raw ${RUNTIME_BIN[l]} exec, in the guest`)
      const guest = []
      const [viaFresh, viaReady, raw] = await measure(
        [
          async () => {
            const r = await fresh(argv)
            guest.push(r.guestMs)
            return r.ms
          },
          async () => {
            const ready = await mod.openChannel(sock) // an API server keeps one ready
            const t0 = now()
            await onChannel(ready, argv)
            return now() - t0
          },
          async () => (await rawExec(l, id, argv)).ms,
        ],
        {n: CHANNEL_N.exec, warmup: 2},
      )
      const loops = IN_GUEST_LOOPS[label]
      const inGuest = []
      for (let i = 0; i < CHANNEL_N.inGuest; i++) {
        const {stdout} = await onChannel(await mod.openChannel(sock), ['/bin/sh', '-c', inGuestLoop(label, loops)])
        inGuest.push(Number(stdout.trim()) / loops / 1000)
      }
      rows[label] = {fresh: viaFresh, ready: viaReady, agentInit: stats(guest.slice(2)), raw, inGuest: stats(inGuest)} // not the 2 warm-ups
    }
    log(`channel ${l}: agent vm exec --cmd true, over the channel and with AGENT_EXEC_CHANNEL=off (${RUNTIME_BIN[l]} exec), interleaved`)
    const [cliChannel, cliRuntime] = await measure(
      [async () => (await agent(['vm', 'exec', '--vm', id, '--cmd', 'true'])).ms, async () => (await agent(['vm', 'exec', '--vm', id, '--cmd', 'true'], {env: {AGENT_EXEC_CHANNEL: 'off'}})).ms],
      {n: CHANNEL_N.cli, warmup: 1},
    )
    log(`channel ${l}: 16 concurrent execs of /bin/true, each on its own connection`)
    const conc = []
    let errors = 0
    for (let i = 0; i < CHANNEL_N.concurrent; i++) {
      const t0 = now()
      const rs = await Promise.allSettled(Array.from({length: 16}, () => fresh(['/bin/true'])))
      conc.push(now() - t0)
      errors += rs.filter((r) => r.status === 'rejected').length
    }
    rows.cli = {channel: cliChannel, runtime: cliRuntime}
    rows.concurrent = {total: stats(conc), errors, bound: round((2 * rows['/bin/true'].fresh.median * 16) / result.host.nproc)}
    out.launchers[l] = rows
    load.push({at: `after ${l}`, loadavg: loadNow()})
    await cleanVm(id)
    const t = rows['/bin/true']
    log(`channel ${l}: ping ${rows.ping.median} ms; /bin/true ${t.fresh.median} ms (ready ${t.ready.median}, in guest ${t.inGuest.median}, raw ${t.raw.median}); vm exec ${cliChannel.median} vs ${cliRuntime.median} ms; 16 at once ${rows.concurrent.total.median} ms (bound ${rows.concurrent.bound}), ${errors} errors`)
  }
  result.channel = out
}

function channelSection() {
  const ch = result.channel
  if (!ch) return []
  const cell = (st) => (st ? `${st.median} (${st.min}–${st.max})` : '—')
  const L = LAUNCHERS.filter((l) => ch.launchers[l])
  const row = (name, pick) => `| ${name} | ${L.map((l) => cell(pick(ch.launchers[l]))).join(' | ')} |`
  const lines = [
    '## The exec channel (issue 14)',
    '',
    `${result.host.runsc}, ${result.host.runc.split('\n')[0]}, ${result.host.nproc} cores. Milliseconds, median (min–max). The host side is agent's own client (packages/cli/src/launchers/guest-channel.ts); "new connection" includes connect and hello, "ready connection" is a connection opened beforehand (as an API server keeps one). In-guest rows are timed inside the guest around a loop: the guest's own cost, the floor. agent-init's own row is the fork-to-reap time it reports in its exit frame (1 ms resolution). Raw rows are \`runsc|runc --root <agent's root> exec <container> …\` from node, in the same VM.`,
    '',
    `| figure | ${L.join(' | ')} |`,
    `|---|${L.map(() => '---:').join('|')}|`,
    row('ping round trip, open connection', (r) => r.ping),
  ]
  for (const label of ['/bin/true', 'bash -l -c true']) {
    lines.push(
      row(`\`${label}\` over the channel, new connection`, (r) => r[label]?.fresh),
      row(`\`${label}\` over the channel, ready connection`, (r) => r[label]?.ready),
      row(`\`${label}\`: agent-init's fork-to-reap`, (r) => r[label]?.agentInit),
      row(`\`${label}\` timed inside the guest (shell loop), per call`, (r) => r[label]?.inGuest),
      row(`\`${label}\` raw runtime exec`, (r) => r[label]?.raw),
    )
  }
  lines.push(
    row("`agent vm exec --cmd true` end to end, channel", (r) => r.cli?.channel),
    row("`agent vm exec --cmd true` end to end, runtime exec (AGENT_EXEC_CHANNEL=off)", (r) => r.cli?.runtime),
    row('16 concurrent `/bin/true` execs, total', (r) => r.concurrent?.total),
    `| 16 concurrent: errors; bound 2 × one exec × 16 / cores | ${L.map((l) => `${ch.launchers[l].concurrent.errors}; ${ch.launchers[l].concurrent.bound}`).join(' | ')} |`,
    '',
    `Machine load (1/5/15-minute load average) during the section: ${ch.load.map((x) => `${x.at} ${x.loadavg.join('/')}`).join('; ')}.`,
    '',
  )
  return lines
}

function platformsSection() {
  const pl = result.platforms
  if (!pl) return []
  const cell = (st) => (st ? `${st.median} (${st.min}–${st.max})` : '—')
  const lines = [
    '## gVisor platforms: ptrace and systrap',
    '',
    `${pl.runsc}, ${result.host.nproc} cores, ${result.host.kvm ? 'KVM' : 'no KVM'}. Medians with (min–max) of N runs, interleaved ptrace / systrap / runc so all three see the same machine noise; runc is the no-sentry reference. In-guest rows are timed inside the guest, so they hold no exec or agent overhead. Ratio = systrap median / ptrace median (below 1: systrap faster).`,
    '',
    '| figure | N | ptrace | systrap | systrap/ptrace | runc (reference) |',
    '|---|---:|---:|---:|---:|---:|',
    ...pl.rows.map((r) => `| ${r.name} (${r.unit}) | ${r.ptrace?.n ?? '—'} | ${cell(r.ptrace)} | ${cell(r.systrap)} | ${r.ratio == null ? '—' : `${r.ratio.toFixed(2)}x`} | ${cell(r.runc)} |`),
    '',
    `Machine load (1/5/15-minute load average) during the section: ${pl.load.map((l) => `${l.at} ${l.loadavg.join('/')}`).join('; ')}.`,
    '',
    `Default: **systrap** (\`DEFAULT_GVISOR_PLATFORM\` in packages/cli/src/launchers/gvisor-version.ts; \`vm create --gvisor-platform ptrace\` or AGENT_GVISOR_PLATFORM to override, recorded per VM). Boot, exec and the CPU-bound loop are within noise of each other; fork+exec inside the guest is ${pl.rows[3]?.ratio ?? '?'}x on systrap (${pl.rows[3]?.systrap?.median ?? '?'} against ${pl.rows[3]?.ptrace?.median ?? '?'} ms a call), a few ms on commands that take hundreds. What decides it is not in this table: on systrap an out-of-memory kill takes only the culprit's command, on ptrace it takes the whole sandbox and agent has to boot it again (test/security/gvisor-gaps.test.ts, docs/security.md). Workloads that fork thousands of processes (big shell builds) can choose ptrace.`,
    '',
  ]
  return lines
}

// ------------------------------------------------------------------ report

function renderReport() {
  const h = result.host
  const lines = []
  lines.push(`# agent benchmark`)
  lines.push('')
  lines.push(`Measured by \`npm run bench\` (test/bench/bench.mjs) on ${h.date.slice(0, 10)}: ${h.nproc} cores (${h.cpuModel}), ${h.memoryGiB} GiB, ${h.os}, kernel ${h.kernel}, ${h.kvm ? 'KVM' : 'no KVM'}, ${h.runsc}, ${h.runc.split('\n')[0]}, ${h.buildah}, Node ${h.node}. Load average at start ${h.loadavgAtStart.join(' / ')}, at end ${result.loadavgAtEnd?.join(' / ')} (a shared machine: other work ran alongside, which is why every figure sits next to a raw baseline measured in the same run, interleaved). Total bench time ${result.totalS} s.`)
  lines.push('')
  lines.push('Each figure is the median of N timed runs after a warm-up; agent runs are `node packages/cli/bin/run.js …` (what the `agent` link runs) with an isolated AGENT_STATE_DIR and the shared image store. Ratio = agent median / raw median; overhead = agent median − raw median. The raw create baseline uses a minimal config.json written by the bench itself (not agent\'s spec builder: no cgroup limits, no overlay disk, no guest init), with the same runsc flags agent uses by default (`--platform=systrap --overlay2=none --network=none`).')
  lines.push('')
  lines.push(figuresTable(result.figures))
  lines.push('')
  if (result.cli) lines.push('## CLI speed (issue 18)', '', ...cliSection(result.cli, h, gitHead()), '')
  if (result.memory.length) {
    lines.push('## Memory')
    lines.push('')
    lines.push(simpleTable(['figure', 'median MiB', 'min', 'max', 'N', 'notes'], result.memory.map((m) => [m.figure, m.median, m.min ?? m.median, m.max ?? m.median, m.n, m.cgroupMiB != null ? `cgroup charge ${m.cgroupMiB} MiB${m.rssMiB != null ? `, RSS sum ${m.rssMiB} MiB` : ''}` : ''])))
    lines.push('')
    lines.push('Agent RSS: `process.resourceUsage().maxRSS` of the agent process at exit, via `NODE_OPTIONS=--import test/bench/rss-preload.mjs`. Idle VM: the processes in the VM\'s memory cgroup `/agent/<id>` (runsc: sentry, gofer and ptrace stubs; runc: agent-init), PSS summed from `/proc/<pid>/smaps_rollup`; the cgroup charge also counts page cache.')
    lines.push('')
  }
  lines.push('## Images')
  lines.push('')
  const c = result.coldImages
  if (c?.rows?.length) {
    lines.push(`Cold builds (${c.fromThisRun ? 'this run' : `**not from this run**: recorded ${c.date} by \`BENCH_COLD_IMAGES=1 npm run bench\``}), private image store:`)
    lines.push('')
    lines.push(simpleTable(['language', 'cold build s', 'notes'], c.rows.map((r) => [r.language, round(r.ms / 1000), r.includesBase ? 'includes the Debian base (debootstrap)' : 'base already built'])))
  } else {
    lines.push('Cold builds were not measured in this run and none are recorded in bench/results: run `BENCH_COLD_IMAGES=1 npm run bench` (adds several minutes; the README quotes about 5 minutes for all four via scripts/build-images.sh).')
  }
  lines.push('')
  const b = result.breakdown
  if (b.startup || b.moduleLoads || b['execPhases-gvisor']) {
    lines.push('## Where agent\'s time goes')
    lines.push('')
    const phaseTable = (title, e) => {
      if (!e) return
      lines.push(`${title} (test/bench/exec-phases.mjs: one fresh process doing what the command does, in the same order, timestamped after each phase; median of ${e.n} per phase; median wall time seen by the parent ${e.wallMedian} ms):`)
      lines.push('')
      lines.push(simpleTable(['phase', 'ms'], e.phases))
      lines.push('')
    }
    phaseTable('`agent --version`', b.startup)
    phaseTable('`agent vm list` with no VMs', b.list)
    if (b.moduleLoads) {
      lines.push(`Module loads, each alone in a fresh process (median of ${b.moduleLoads.n}; a bare \`node -e 0\` took ${b.moduleLoads.baseline} ms in the same rounds):`)
      lines.push('')
      lines.push(simpleTable(['process', 'ms', 'over bare node'], b.moduleLoads.rows.map(([k, v]) => [k, v, round(v - b.moduleLoads.baseline)])))
      lines.push('')
    }
    for (const l of LAUNCHERS) {
      phaseTable(`\`vm exec --cmd 'echo hi'\` (${l})`, b[`execPhases-${l}`])
      const x = b[`exec-${l}`]
      if (x) {
        lines.push(`For scale (exec figure above, same run): raw \`${RUNTIME_BIN[l]} exec <ctr> echo hi\` ${x.rawExec} ms; raw \`${RUNTIME_BIN[l]} exec\` of the agent-init wrapper agent runs (\`/.agent/agent-init exec --timeout 30 --tag T -- /bin/sh -c 'echo hi'\`) ${x.rawExecViaInit} ms; agent ${x.agent} ms. So the guest-side wrapper costs ${round(x.rawExecViaInit - x.rawExec)} ms and agent's host side ${round(x.agent - x.rawExecViaInit)} ms.`)
        lines.push('')
      }
    }
    const segTable = (title, cr) => {
      if (!cr) return
      lines.push(`${title}, from agent's own \`--log-file\` timestamps (each log line's time until the next one, so a command's row is that command's duration; median over ${cr.n} runs):`)
      lines.push('')
      // Log lines that are not commands or steps (build progress) are folded into one row.
      const known = /^(process|command|after|step|buildah|truncate|mkfs|mv|mount|umount|losetup|unshare|runsc|runc|ip|slirp)/
      const rows = []
      let other = 0
      for (const [k, v] of cr.segments) known.test(k) ? rows.push([k, v]) : (other += v)
      if (other) rows.push(['other log lines (progress output)', round(other)])
      lines.push(simpleTable(['segment', 'ms'], rows))
      lines.push('')
    }
    for (const l of LAUNCHERS) segTable(`\`vm create\` (${l}, one per language)`, b.create?.[l])
    segTable('`image build <language>` (cached, one per language)', b.image)
    if (Object.keys(result.spawns).length) {
      lines.push('Process spawns per command (strace -f): what agent\'s node process forks itself (each with the chain of programs that process execs), and every successful execve in the tree (including runc\'s own re-exec `exe` and, under runc, the guest\'s agent-init and command). runsc cannot run under strace (its ptrace platform), so create/clean are counted with runc.')
      lines.push('')
      const fmtCounts = (o) => Object.entries(o).map(([p, n]) => `${p}×${n}`).join(', ') || 'none'
      const total = (o) => Object.values(o).reduce((a, x) => a + x, 0)
      lines.push(simpleTable(['command', 'spawned by agent', 'which', 'execve total', 'by program'], Object.entries(result.spawns).map(([k, v]) => [k, String(total(v.direct)), fmtCounts(v.direct), String(total(v.all)), fmtCounts(v.all)])))
      lines.push('')
    }
  }
  lines.push('<!-- platforms:start -->', ...platformsSection(), '<!-- platforms:end -->', '')
  if (result.channel) lines.push('<!-- channel:start -->', ...channelSection(), '<!-- channel:end -->', '')
  if (result.serve) lines.push('<!-- serve:start -->', ...serveSection(result.serve, result.host), '<!-- serve:end -->', '')
  lines.push(...suggestions())
  if (result.notes.length) {
    lines.push('## Notes')
    lines.push('')
    for (const n of result.notes) lines.push(`- ${n}`)
    lines.push('')
  }
  return lines.join('\n')
}

/** Cheap fixes, each with the saving this run measured for the cost it removes (not a guess at the new total). */
function suggestions() {
  const b = result.breakdown
  const phase = (e, prefix) => e?.phases?.find(([k]) => k.startsWith(prefix))?.[1]
  const seg = (l, prefix) => b.create?.[l]?.segments?.find(([k]) => k.startsWith(prefix))?.[1]
  const mod = (prefix) => {
    const r = b.moduleLoads?.rows.find(([k]) => k.startsWith(`import ${prefix}`))
    return r ? round(r[1] - b.moduleLoads.baseline) : undefined
  }
  const ms = (x) => (x == null ? '?' : `${Math.round(x)} ms`)
  const e = b['execPhases-gvisor']
  const out = []
  const item = (what, where, saving) => out.push(`| ${what} | ${where} | ${saving} |`)
  if (e) {
    item(
      'Drop TypeORM from the command path: one table, a handful of queries; use sqlite3 directly (keep the migration table format) or load TypeORM only when a migration is pending',
      'packages/cli/src/state/vm-repository.ts (`openVmRepository`, `VmRepository`), state/vm.entity.ts',
      `≈ ${ms(phase(e, 'import vm-repository') - (mod('sqlite3') ?? 0))} per command: the vm-repository import phase in exec (${ms(phase(e, 'import vm-repository'))}) minus what sqlite3 alone costs (${ms(mod('sqlite3'))}); TypeORM alone in a fresh process: ${ms(mod('typeorm'))} over bare node`,
    )
    item(
      'Import listr2 (fanout.ts) only for multi-VM runs: `await import(\'../services/fanout.js\')` inside the fan-out branch',
      'packages/cli/src/cli/exec-command.ts (static `import {fanout}`), cli/lifecycle-command.ts',
      `up to ≈ ${ms(Math.min(mod('listr2') ?? Infinity, phase(e, 'import exec-command')))} per single-VM exec/run/stop/start/clean (listr2 alone over bare node; the whole exec-command import phase is ${ms(phase(e, 'import exec-command'))})`,
    )
    item(
      'Import winston lazily, or write the console logger by hand and load winston only with --log-file (the command class import pulls it in at start-up)',
      'packages/cli/src/logging/logger.ts, base-command.ts',
      `up to ≈ ${ms(Math.min(mod('winston') ?? Infinity, phase(e, 'load vm:exec')))} per command (bounded by the command-class phase, ${ms(phase(e, 'load vm:exec'))}, which loads winston; winston alone in a fresh process: ${ms(mod('winston'))} over bare node)`,
    )
    const exitExtra = b.bare ? round(phase(e, 'spawn + process exit') - b.bare.outsideMs) : undefined
    if (exitExtra > 20)
      item(
        'Find what keeps the event loop alive after the work is done (exit is slower than a bare node process), or call process.exit() once output is flushed',
        'packages/cli/bin/run.js / base-command.ts `finally`',
        `≈ ${ms(exitExtra)} per command (exit seen by the parent minus a bare node process's)`,
      )
  }
  if (b.create?.gvisor) {
    item('Inspect the image once per create (chooseImage and ensureImage each run `buildah inspect`)', 'packages/cli/src/images/resolve.ts (`chooseImage`, `ensureImage`), services/vm-service.ts `createVm`', `≈ ${ms(seg('gvisor', 'buildah inspect image') / 2)} per create (half of the ×2 row)`)
    item('Skip `buildah inspect --type container` on create: a fresh id cannot have a working container (keep the check for start)', 'packages/cli/src/launchers/oci.ts `prepare()` (`containerExists`)', `≈ ${ms(seg('gvisor', 'buildah inspect container'))} per create`)
    item('Replace the `truncate` and `mv` processes with fs.truncate / fs.rename', 'packages/cli/src/launchers/disk.ts `ensureDisk`', `≈ ${ms((seg('gvisor', 'truncate') ?? 0) + (seg('gvisor', 'mv') ?? 0))} per create`)
    item('Skip the runtime `state` call before `run` when the VM is new, and the `--version` availability probe of the chosen launcher on every create (cache it in the state dir, or let `run` fail with the same hint)', 'packages/cli/src/launchers/oci.ts `boot()`, `available()`; launchers/select.ts `chooseLauncher`', 'one runtime spawn each (≈ raw `exec`-sized, 50-100 ms here); see the spawn table')
  }
  const img = b.image?.segments?.find(([k]) => k.startsWith('buildah inspect image'))
  const bud = b.image?.segments?.find(([k]) => k.startsWith('buildah build'))
  if (img && bud)
    item('image build: one `buildah inspect` of the image instead of three (base check, id before, id after), or read the id from `buildah build --iidfile`', 'packages/cli/src/services/image-service.ts (`baseStep`, `languageStep`), images/base-image.ts', `≈ ${ms((img[1] * 2) / 3)} per cached build (two of the three inspects; the cached \`buildah build\` itself took ${ms(bud[1])})`)
  const clean = result.figures.find((f) => f.name === 'vm clean (gvisor)')
  if (clean)
    item('Clean: send KILL at once (the VM is being destroyed, a graceful TERM buys nothing) instead of TERM + `state` polls every 100 ms', 'packages/cli/src/launchers/oci.ts `killContainer()` when called from `remove()`', `part of the ${ms(clean.overheadMs)} clean overhead over raw (spawn table: runc×5 per clean)`)
  if (!out.length) return []
  return ['## Cheap fixes (suggested, not applied)', '', '| fix | where | saving measured in this run |', '|---|---|---|', ...out, '', 'Savings are the measured cost of the thing removed; they overlap a little (shared dependencies load once), so do not add them up blindly.', '']
}

function readmeSection() {
  const h = result.host
  const pick = result.figures.filter((f) => !f.name.startsWith('  '))
  const lines = [
    `Measured ${h.date.slice(0, 10)} on ${h.nproc} cores, ${h.memoryGiB} GiB, kernel ${h.kernel}, ${h.kvm ? 'KVM' : 'no KVM'}, ${h.runsc}, ${h.runc.split('\n')[0]}, Node ${h.node}; a shared, noisy machine, so read the ratios. Medians; full table, memory and the breakdown of agent's own time in [bench/REPORT.md](bench/REPORT.md).`,
    '',
    '| figure | agent ms | raw baseline | raw ms | ratio | overhead ms |',
    '|---|---:|---|---:|---:|---:|',
    ...pick.map((f) => `| ${f.name} | ${Math.round(f.agent?.median ?? NaN)} | ${f.rawLabel ?? '—'} | ${f.raw ? Math.round(f.raw.median) : '—'} | ${f.ratio != null ? `${f.ratio.toFixed(2)}x` : '—'} | ${f.overheadMs != null ? Math.round(f.overheadMs) : '—'} |`),
  ]
  const idle = result.memory.filter((m) => m.figure.startsWith('idle VM python'))
  if (idle.length) lines.push('', `Idle VM host memory (PSS of its processes): ${idle.map((m) => `${m.figure.replace(/: PSS.*$/, '')} ${m.median} MiB`).join('; ')}.`)
  return lines.join('\n')
}

function writeOutputs() {
  mkdirSync(RESULTS_DIR, {recursive: true})
  result.loadavgAtEnd ??= loadNow()
  writeFileSync(join(RESULTS_DIR, 'latest.json'), JSON.stringify(result, null, 2) + '\n')
  const md = renderReport()
  writeFileSync(join(RESULTS_DIR, 'latest.md'), md + '\n')
  if ((result.options.only ?? []).length === 0 && !result.options.quick && !result.failed) {
    writeFileSync(join(ROOT, 'bench', 'REPORT.md'), md + '\n')
    const readme = join(ROOT, 'README.md')
    const text = readFileSync(readme, 'utf8')
    const start = '<!-- bench:start -->'
    const end = '<!-- bench:end -->'
    const i = text.indexOf(start)
    const j = text.indexOf(end)
    if (i >= 0 && j > i) writeFileSync(readme, text.slice(0, i + start.length) + '\n' + readmeSection() + '\n' + text.slice(j))
    else log('README has no bench markers: not updated')
  } else if (result.cli && !result.options.quick && !result.failed) {
    // BENCH_ONLY=cli: only the CLI speed table of the README is replaced.
    const readme = join(ROOT, 'README.md')
    const text = readFileSync(readme, 'utf8')
    const start = '<!-- bench-cli:start -->'
    const end = '<!-- bench-cli:end -->'
    const i = text.indexOf(start)
    const j = text.indexOf(end)
    const table = cliSection(result.cli, result.host, gitHead()).join('\n')
    if (i >= 0 && j > i) writeFileSync(readme, text.slice(0, i + start.length) + '\n' + table + '\n' + text.slice(j))
    else log('README has no bench-cli markers: not updated')
    // And the same table in bench/REPORT.md, between its own markers.
    const report = join(ROOT, 'bench', 'REPORT.md')
    const rtext = existsSync(report) ? readFileSync(report, 'utf8') : ''
    const [rs, re] = ['<!-- cli:start -->', '<!-- cli:end -->']
    const block = [rs, '## CLI speed (issue 18)', '', table, re].join('\n')
    const ri = rtext.indexOf(rs)
    const rj = rtext.indexOf(re)
    writeFileSync(report, ri >= 0 && rj > ri ? rtext.slice(0, ri) + block + rtext.slice(rj + re.length) : rtext.trimEnd() + '\n\n' + block + '\n')
    log('partial run: only the CLI speed tables of the README and bench/REPORT.md updated')
  } else if (result.channel && !result.platforms && !result.options.quick && !result.failed) {
    // BENCH_ONLY=channel: only the exec channel table of bench/REPORT.md is replaced.
    const report = join(ROOT, 'bench', 'REPORT.md')
    const text = existsSync(report) ? readFileSync(report, 'utf8') : ''
    const start = '<!-- channel:start -->'
    const end = '<!-- channel:end -->'
    const section = [start, ...channelSection(), end].join('\n')
    const i = text.indexOf(start)
    const j = text.indexOf(end)
    writeFileSync(report, i >= 0 && j > i ? text.slice(0, i) + section + text.slice(j + end.length) : text.trimEnd() + '\n\n' + section + '\n')
    log('partial run: only the exec channel table of bench/REPORT.md updated')
  } else if (result.platforms && !result.options.quick && !result.failed) {
    // BENCH_ONLY=platforms: only the platform table of bench/REPORT.md is replaced.
    const report = join(ROOT, 'bench', 'REPORT.md')
    const text = existsSync(report) ? readFileSync(report, 'utf8') : ''
    const start = '<!-- platforms:start -->'
    const end = '<!-- platforms:end -->'
    const section = [start, ...platformsSection(), end].join('\n')
    const i = text.indexOf(start)
    const j = text.indexOf(end)
    writeFileSync(report, i >= 0 && j > i ? text.slice(0, i) + section + text.slice(j + end.length) : text.trimEnd() + '\n\n' + section + '\n')
    log('partial run: only the platform table of bench/REPORT.md updated')
  } else if (result.serve && !result.options.quick && !result.failed) {
    // BENCH_ONLY=serve: only the agent serve table of bench/REPORT.md is replaced.
    const report = join(ROOT, 'bench', 'REPORT.md')
    const text = existsSync(report) ? readFileSync(report, 'utf8') : ''
    const start = '<!-- serve:start -->'
    const end = '<!-- serve:end -->'
    const section = [start, ...serveSection(result.serve, result.host), end].join('\n')
    const i = text.indexOf(start)
    const j = text.indexOf(end)
    writeFileSync(report, i >= 0 && j > i ? text.slice(0, i) + section + text.slice(j + end.length) : text.trimEnd() + '\n\n' + section + '\n')
    log('partial run: only the agent serve table of bench/REPORT.md updated')
  } else log('partial, failed or quick run: bench/REPORT.md and README not updated')
  process.stdout.write(md + '\n')
}

// BENCH_RENDER=bench/results/latest.json re-renders the reports from a saved run (no measuring).
if (process.env.BENCH_RENDER) {
  Object.assign(result, JSON.parse(readFileSync(process.env.BENCH_RENDER, 'utf8')))
  rmSync(STATE, {recursive: true, force: true})
  writeOutputs()
  process.exit(0)
}
let failed
try {
  await main()
} catch (err) {
  failed = err
  result.failed = true
  log(`FAILED: ${err.stack ?? err}`)
  note(`the run failed part-way: ${String(err.message).split('\n')[0]}`)
} finally {
  if (!interrupted) await cleanup()
}
if (!interrupted) {
  result.totalS = round(elapsedS())
  writeOutputs()
  log(`done in ${result.totalS} s`)
  process.exit(failed ? 1 : 0)
}
