// BENCH_ONLY=cli (issue 18, CLI speed): each of the issue's target figures with its raw baseline,
// measured interleaved in the same run, the 1-minute load when it was taken, and the target next
// to it (met or missed, honestly). Parts, for a run that has to fit: BENCH_ONLY=cli runs them all;
// BENCH_ONLY=cli-version,cli-create,cli-exec,cli-serve,cli-list,cli-fanout runs only those.
//  - agent --version                      vs node -e 0                               <= 100 ms
//  - vm create python, image cached        vs buildah from+mount, config.json, run     <= 500 ms
//  - vm clean                              vs <runtime> delete --force + buildah rm    runc <= 400 ms, gvisor <= raw + 150 ms
//  - vm exec --cmd 'echo hi', no server    vs <runtime> exec <ctr> echo hi             <= 200 ms
//  - vm exec --cmd 'echo hi', agent serve  (its socket route; SERVE-ROUTE's work)      <= 120 ms
//  - vm list, 16 running VMs               vs node -e 0                               <= 200 ms
//  - vm exec --hello --all over 32 VMs     vs one raw hello exec, same VMs             <= 1.5 x (32 / cores x raw) + 300 ms
// Called by bench.mjs with its helpers; appends the medians to bench/results/history.jsonl.
import {existsSync, readFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {cpus} from 'node:os'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'
import {execa} from 'execa'
import {figure, loadNow, measure, now, pool, round, stats} from './lib.mjs'

const PARTS = ['version', 'create', 'exec', 'serve', 'list', 'fanout']

/** Which parts BENCH_ONLY asks for (all of them for `cli`). */
export function cliParts(only) {
  if (only.has('cli')) return new Set(PARTS)
  return new Set(PARTS.filter((p) => only.has(`cli-${p}`)))
}

/**
 * h: {parts, QUICK, ROOT, RUN_JS, STATE, AGENT_ENV, RUNTIME_BIN, log, note, run, agent, rawExec(l, id, argv),
 *     rawCreate(l, lang), rawRt(l, args, opts), rawRemove(name), createVm(lang, l, extra), cleanVm(id), vms}
 */
export async function cliBench(h) {
  const n = h.QUICK ? 3 : 10
  const cores = cpus().length
  const section = {loadStart: loadNow(), figures: [], notes: [], cores}
  // CPU time (user + sys of the process and its children, /usr/bin/time) next to wall time: on a
  // loaded machine wall time is mostly waiting for a core, CPU time much less so.
  const cpuFile = join(h.STATE, 'cpu-time.txt')
  const cpuMs = async (file, args, env) => {
    await h.run('/usr/bin/time', ['-f', '%U %S', '-o', cpuFile, file, ...args], {env: {...h.AGENT_ENV, ...env}, extendEnv: false, timeout: 300_000})
    const [u, s] = readFileSync(cpuFile, 'utf8').trim().split('\n').pop().split(' ').map(Number)
    return round((u + s) * 1000)
  }
  const cpuPair = async (agentArgs, rawFile, rawArgs) => {
    const a = [], r = []
    for (let i = 0; i < n; i++) {
      a.push(await cpuMs('node', [h.RUN_JS, ...agentArgs]))
      r.push(await cpuMs(rawFile, rawArgs))
    }
    return {agent: stats(a).median, raw: stats(r).median}
  }
  let cpu // set just before put() for the figures that have it
  const put = (name, agentS, rawS, rawLabel, target) => {
    const f = {...figure('cli', name, agentS, rawS, rawLabel), load: loadNow(), ...(cpu ? {cpu} : {})}
    cpu = undefined
    if (target) {
      const limit = typeof target.limit === 'function' ? target.limit(f) : target.limit
      Object.assign(f, {target: target.label, limitMs: round(limit), met: agentS ? agentS.median <= limit : null})
    }
    section.figures.push(f)
    h.log(`cli: ${name}: ${agentS?.median} ms (raw ${rawS?.median ?? '-'}${f.limitMs != null ? `, target <= ${f.limitMs}: ${f.met ? 'met' : 'MISSED'}` : ''}), load ${f.load.join('/')}`)
  }
  const launchers = ['gvisor', 'runc']
  const p = h.parts

  if (p.has('version')) {
    const [nodeS, versionS] = await measure([() => h.run('node', ['-e', '0']), () => h.agent(['--version'])], {n: h.QUICK ? 3 : 15, warmup: 2})
    cpu = await cpuPair(['--version'], 'node', ['-e', '0'])
    put('agent --version', versionS, nodeS, '`node -e 0`', {label: '<= 100', limit: 100})
  }

  if (p.has('create')) {
    for (const launcher of launchers) {
      const rt = h.RUNTIME_BIN[launcher]
      const agentCreate = [], rawCreateMs = [], agentClean = [], rawDelete = [], rawTeardown = []
      for (let i = 0; i < (h.QUICK ? 2 : 5); i++) {
        const {id, ms} = await h.createVm('python', launcher)
        const r = await h.rawCreate(launcher, 'python')
        const cms = await h.cleanVm(id)
        const t0 = now()
        await h.rawRt(launcher, ['delete', '--force', r.name], {ok: () => true})
        const del = now() - t0
        const rest = await h.rawRemove(r.name)
        if (i === 0) continue // warm-up
        agentCreate.push(ms)
        rawCreateMs.push(r.ms)
        agentClean.push(cms)
        rawDelete.push(del)
        rawTeardown.push(del + rest)
      }
      put(`vm create python (${launcher}, image cached)`, stats(agentCreate), stats(rawCreateMs), `buildah from+mount, config.json, \`${rt} run --detach\``, {label: '<= 500', limit: 500})
      const cleanTarget = launcher === 'runc' ? {label: '<= 400', limit: 400} : {label: '<= raw + 150', limit: (f) => (f.raw?.median ?? NaN) + 150}
      put(`vm clean (${launcher})`, stats(agentClean), stats(rawTeardown), `\`${rt} delete --force\`, buildah umount+rm`, cleanTarget)
      put(`  … raw \`${rt} delete --force\` alone`, stats(rawDelete), null, null)
    }
  }

  // One VM per launcher for the exec figures (and the list's first two).
  const ids = {}
  if (p.has('exec') || p.has('serve') || p.has('list')) {
    for (const launcher of launchers) ids[launcher] = (await h.createVm('python', launcher, ['--mem', '64'])).id
  }
  const execFig = async (label, target) => {
    for (const launcher of launchers) {
      const id = ids[launcher]
      const [agentS, rawS] = await measure([() => h.agent(['vm', 'exec', '--vm', id, '--cmd', 'echo hi']), () => h.rawExec(launcher, id, ['echo', 'hi'])], {n, warmup: 1})
      cpu = await cpuPair(['vm', 'exec', '--vm', id, '--cmd', 'echo hi'], h.RUNTIME_BIN[launcher], ['--root', join(h.STATE, 'run', launcher), 'exec', `agent-${id}`, 'echo', 'hi'])
      put(`vm exec --cmd 'echo hi' (${launcher}, ${label})`, agentS, rawS, `\`${h.RUNTIME_BIN[launcher]} exec <ctr> echo hi\``, target)
    }
  }
  if (p.has('exec')) await execFig('no server', {label: '<= 200', limit: 200})
  if (p.has('serve')) {
    const srv = await startServe(h)
    try {
      if (!srv.routed) section.notes.push(`agent serve ran, but ${join('<state>', 'serve.sock')} never appeared: the exec figures "with agent serve" are the CLI's own path (the socket route had not landed)`)
      await execFig('agent serve running', {label: '<= 120', limit: 120})
    } finally {
      await srv.stop()
    }
  }

  if (p.has('list')) {
    const want = h.QUICK ? 4 : 16
    await pool(Array.from({length: want - Object.keys(ids).length}), 2, () => h.createVm('python', 'runc', ['--mem', '64']))
    const [nodeS, listS] = await measure([() => h.run('node', ['-e', '0']), () => h.agent(['vm', 'list'])], {n, warmup: 1})
    cpu = await cpuPair(['vm', 'list'], 'node', ['-e', '0'])
    put(`agent vm list (${want} running VMs)`, listS, nodeS, '`node -e 0`', {label: '<= 200', limit: 200})
  }
  if (h.vms.size) await h.agent(['vm', 'clean', '--all'], {timeout: 600_000})
  h.vms.clear()

  if (p.has('fanout')) await fanout32(h, put, section)
  section.loadEnd = loadNow()
  return section
}

/** `agent serve` on the bench's state dir; `routed` once its socket for the CLI route exists. */
async function startServe(h) {
  const port = await new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const {port} = s.address()
      s.close(() => resolve(port))
    })
    s.on('error', reject)
  })
  let log = ''
  const proc = execa(process.execPath, [h.RUN_JS, 'serve', '--listen', `127.0.0.1:${port}`], {env: {...h.AGENT_ENV, AGENT_API_KEY: 'bench-key-0123456789abcdef', NO_COLOR: '1'}, extendEnv: false, reject: false, all: true})
  proc.all?.on('data', (b) => (log += b.toString()))
  const sock = join(h.STATE, 'serve.sock')
  const t0 = now()
  for (;;) {
    const up = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false)
    if (up && (existsSync(sock) || now() - t0 > 15_000)) break
    if (proc.exitCode !== null || now() - t0 > 120_000) throw new Error(`agent serve did not come up:\n${log}`)
    await new Promise((r) => setTimeout(r, 50))
  }
  h.log(`cli: agent serve up on port ${port}${existsSync(sock) ? `, route socket ${sock}` : ', no route socket'}`)
  return {
    routed: existsSync(sock),
    stop: async () => {
      proc.kill('SIGTERM')
      await proc
    },
  }
}

/** vm exec --hello --all over 32 VMs against 1.5 x (32 / cores x one raw hello exec) + 300 ms. */
async function fanout32(h, put, section) {
  const launcher = process.env.BENCH_FANOUT_RUNTIME ?? 'gvisor'
  const size = h.QUICK ? 4 : 32
  const cores = section.cores
  const {runtime} = await import(pathToFileURL(join(h.ROOT, 'plugins', 'python', 'dist', 'runtime.js')).href)
  h.log(`cli: fan-out: creating ${size} ${launcher} VMs (--mem 64)`)
  const t0 = now()
  const ids = (await pool(Array.from({length: size}), 2, () => h.createVm('python', launcher, ['--mem', '64']))).map((m) => m.id)
  section.notes.push(`${size} ${launcher} VMs for the fan-out were created in ${round((now() - t0) / 1000)} s, two at a time`)
  let k = 0
  // Each round: one agent fan-out, then one raw hello exec in a VM (a different one each round).
  const [agentS, rawS] = await measure(
    [
      async () => {
        const {ms, stdout} = await h.agent(['vm', 'exec', '--hello', '--all'])
        const got = (stdout.match(/hello from python/g) ?? []).length
        if (got !== size) h.note(`fan-out ${size}: ${got} hellos printed, not ${size}`)
        return ms
      },
      () => h.rawExec(launcher, ids[k++ % ids.length], runtime.hello),
    ],
    {n: h.QUICK ? 1 : 5, warmup: 1},
  )
  const label = `1.5 x (${size} / ${cores} cores x raw) + 300`
  put(`vm exec --hello --all, ${size} VMs (${launcher}) total`, agentS, rawS, `one \`${h.RUNTIME_BIN[launcher]} exec <ctr> <hello>\``, {label, limit: (f) => 1.5 * ((size / cores) * (f.raw?.median ?? NaN)) + 300})
  const c = Date.now()
  await h.agent(['vm', 'clean', '--all'], {timeout: 600_000})
  section.notes.push(`vm clean --all of the ${size} VMs took ${round((Date.now() - c) / 1000)} s`)
  h.vms.clear()
}

/** The README's and REPORT's table (markdown lines). */
export function cliSection(c, host, commit) {
  const cell = (x) => (x == null || Number.isNaN(x) ? '—' : String(Math.round(x)))
  return [
    `Measured ${host.date.slice(0, 10)} (commit ${commit ?? '?'}) by \`BENCH_ONLY=cli npm run bench\` on ${host.nproc} cores, ${host.runsc}, ${host.runc.split('\n')[0]}, Node ${host.node}. Load average (1/5/15 min) at start ${c.loadStart.join(' / ')}, at end ${c.loadEnd.join(' / ')}; the load column is the 1-minute load when the figure was taken (the machine is shared: a load above ${host.nproc} means other work ran alongside, which is why each figure has its raw baseline from the same run, interleaved). Medians in ms. CPU agent / raw: median user + sys CPU ms of the process and its children (/usr/bin/time, 10 ms resolution), measured right after the wall-time runs; it moves much less with the load. The history of every run is in bench/results/history.jsonl.`,
    '',
    '| figure | agent | min–max | N | raw baseline | raw | ratio | target | met | CPU agent / raw | load |',
    '|---|---:|---:|---:|---|---:|---:|---|---|---:|---:|',
    ...c.figures.map(
      (f) =>
        `| ${f.name} | ${cell(f.agent?.median)} | ${cell(f.agent?.min)}–${cell(f.agent?.max)} | ${f.agent?.n ?? '—'} | ${f.rawLabel ?? '—'} | ${f.raw ? cell(f.raw.median) : '—'} | ${f.ratio != null ? `${f.ratio.toFixed(2)}x` : '—'} | ${f.target ? `${f.target} (${cell(f.limitMs)})` : ''} | ${f.met == null ? '' : f.met ? 'met' : '**missed**'} | ${f.cpu ? `${cell(f.cpu.agent)} / ${cell(f.cpu.raw)}` : ''} | ${f.load[0]} |`,
    ),
    ...(c.notes.length ? ['', ...c.notes.map((s) => `- ${s}`)] : []),
  ]
}
