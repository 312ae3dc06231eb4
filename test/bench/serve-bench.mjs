// BENCH_ONLY=serve (issue 13, Performance): `agent serve` through the real `e2b` SDK (the root
// devDependency), against the raw runtime in the same sandbox and the same run.
//  - create-to-first-command: Sandbox.create('python') + commands.run('true'), with
//    `--pool python=2` (the pool refilled to 2 before every create, as /health reports it) and
//    with no pool (a cold boot per create; a second server on the same state dir, started after
//    the first stopped, since one state dir has one server);
//  - commands.run('true') through the SDK, interleaved with raw `runsc exec <ctr> true` and
//    `/bin/true` over the exec channel (a new connection each), in the same sandbox;
//  - the server's RSS (VmRSS) and peak (VmHWM) from /proc: idle, and with K sandboxes each having
//    run a command.
// Called by bench.mjs with its helpers; no timing is asserted.
import {readFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'
import {execa} from 'execa'
import {loadNow, measure, now, round, stats} from './lib.mjs'

const API_KEY = 'bench-key-0123456789abcdef'

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.listen(0, '127.0.0.1', () => {
      const {port} = s.address()
      s.close(() => resolve(port))
    })
    s.on('error', reject)
  })
}

function procMemKiB(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8')
    const get = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN)
    return {rss: get('VmRSS'), hwm: get('VmHWM')}
  } catch {
    return {rss: NaN, hwm: NaN}
  }
}
const mib = (kib) => round(kib / 1024)

/**
 * h: {RUN_JS, CLI_DIR, AGENT_ENV, STATE, QUICK, log, rawExecGvisor(id, argv) -> {ms}, cleanAll()}
 */
export async function serveBench(h) {
  const n = h.QUICK ? {pool: 2, cold: 2, run: 4, sandboxes: 2} : {pool: 8, cold: 5, run: 20, sandboxes: Number(process.env.BENCH_SERVE_SANDBOXES ?? 16)}
  const out = {n, load: [{at: 'start', loadavg: loadNow()}], notes: []}
  const mark = (at) => out.load.push({at, loadavg: loadNow()})

  const start = async (extra) => {
    const port = await freePort()
    let log = ''
    const proc = execa(process.execPath, [h.RUN_JS, 'serve', '--listen', `127.0.0.1:${port}`, '--socket', '', ...extra], {
      env: {...h.AGENT_ENV, AGENT_API_KEY: API_KEY, NO_COLOR: '1'},
      extendEnv: false,
      reject: false,
      all: true,
    })
    proc.all?.on('data', (b) => (log += b.toString()))
    const url = `http://127.0.0.1:${port}`
    const t0 = now()
    for (;;) {
      const r = await fetch(`${url}/health`).catch(() => undefined)
      if (r?.ok) break
      if (proc.exitCode !== null || now() - t0 > 120_000) throw new Error(`agent serve did not come up:\n${log}`)
      await new Promise((r) => setTimeout(r, 50))
    }
    process.env.E2B_API_URL = url
    process.env.E2B_SANDBOX_URL = url
    process.env.E2B_API_KEY = API_KEY
    const health = async () => (await (await fetch(`${url}/health`)).json()).pool ?? {}
    const stop = async () => {
      proc.kill('SIGTERM')
      await proc
    }
    return {proc, url, health, stop, log: () => log}
  }
  const waitPool = async (srv, want) => {
    const t0 = now()
    while ((await srv.health()).python !== want) {
      if (now() - t0 > 180_000) throw new Error(`the python pool did not reach ${want} in 180 s`)
      await new Promise((r) => setTimeout(r, 100))
    }
    return now() - t0
  }

  const {Sandbox} = await import('e2b')
  const channelMod = await import(pathToFileURL(join(h.CLI_DIR, 'dist', 'launchers', 'guest-channel.js')).href).catch(() => null)

  const createToFirst = async () => {
    const t0 = now()
    const s = await Sandbox.create('python', {timeoutMs: 600_000})
    await s.commands.run('true')
    const ms = now() - t0
    return {s, ms}
  }

  // ---- 1. with --pool python=2
  h.log('serve: agent serve --pool python=2; waiting for the pool to fill')
  let srv = await start(['--pool', 'python=2'])
  out.poolFillMs = round(await waitPool(srv, 2))
  await new Promise((r) => setTimeout(r, 2000))
  out.rssIdlePool = procMemKiB(srv.proc.pid)
  const poolMs = []
  const refillMs = []
  for (let i = 0; i < n.pool + 1; i++) {
    const {s, ms} = await createToFirst()
    // The refill started at the claim: time it from the first command's answer to /health showing 2.
    const r = (await waitPool(srv, 2)) + 0
    await s.kill()
    if (i > 0) {
      poolMs.push(ms) // the first is a warm-up (SDK and server code paths)
      refillMs.push(r)
    }
  }
  out.pool = stats(poolMs)
  out.refill = stats(refillMs)
  mark('after pooled creates')
  h.log(`serve: create-to-first-command with the pool ${out.pool.median} ms (N=${out.pool.n}); refill ${out.refill.median} ms`)

  // ---- 2. commands.run('true') vs raw runsc exec vs the exec channel, same sandbox
  const sbx = await Sandbox.create('python', {timeoutMs: 600_000})
  const id = sbx.sandboxId
  const sock = channelMod ? channelMod.channelSocketPath(join(h.STATE, 'vms', id)) : null
  const fns = [async () => void (await sbx.commands.run('true')), async () => (await h.rawExecGvisor(id, ['true'])).ms]
  if (channelMod) {
    fns.push(async () => {
      const t0 = now()
      const c = await channelMod.openChannel(sock)
      const e = await c.exec({argv: ['/bin/true'], timeoutMs: 60_000}, {}).done
      c.close?.()
      if (e.reason !== 'exit' || e.code !== 0) throw new Error(`channel /bin/true: ${JSON.stringify(e)}`)
      return now() - t0
    })
  } else out.notes.push('the exec channel module (packages/cli/dist/launchers/guest-channel.js) was not found: no channel row')
  h.log(`serve: commands.run('true') vs raw runsc exec true${channelMod ? ' vs the exec channel' : ''}, interleaved (N=${n.run})`)
  const [sdkRun, rawRun, chRun] = await measure(fns, {n: n.run, warmup: 2})
  out.run = {sdk: sdkRun, raw: rawRun, channel: chRun ?? null}
  await sbx.kill()
  mark('after commands.run')
  h.log(`serve: commands.run('true') ${sdkRun.median} ms, raw runsc exec ${rawRun.median} ms${chRun ? `, channel ${chRun.median} ms` : ''}`)
  out.rssPeakPoolServer = procMemKiB(srv.proc.pid)
  await srv.stop()

  // ---- 3. no pool: cold creates, then the server's memory idle and with K sandboxes
  h.log('serve: agent serve with no pool')
  srv = await start([])
  await new Promise((r) => setTimeout(r, 2000))
  out.rssIdle = procMemKiB(srv.proc.pid)
  const coldMs = []
  for (let i = 0; i < n.cold + 1; i++) {
    const {s, ms} = await createToFirst()
    await s.kill()
    if (i > 0) coldMs.push(ms)
  }
  out.cold = stats(coldMs)
  mark('after cold creates')
  h.log(`serve: create-to-first-command with no pool ${out.cold.median} ms (N=${out.cold.n})`)

  h.log(`serve: ${n.sandboxes} sandboxes at once (created two at a time, one command each)`)
  const t0 = now()
  const held = []
  const queue = Array.from({length: n.sandboxes}, (_, i) => i)
  await Promise.all(
    [0, 1].map(async () => {
      while (queue.length) {
        queue.shift()
        const s = await Sandbox.create('python', {timeoutMs: 900_000})
        held.push(s)
        await s.commands.run('true')
      }
    }),
  )
  out.manyCreateS = round((now() - t0) / 1000)
  // One more command in each, all at once: the server's peak with every sandbox busy.
  await Promise.all(held.map((s) => s.commands.run('echo hi')))
  out.rssMany = procMemKiB(srv.proc.pid)
  out.manyCount = held.length
  mark(`with ${held.length} sandboxes`)
  h.log(`serve: server RSS idle ${mib(out.rssIdle.rss)} MiB (peak ${mib(out.rssIdle.hwm)}), with ${held.length} sandboxes ${mib(out.rssMany.rss)} MiB (peak ${mib(out.rssMany.hwm)}); ${held.length} created in ${out.manyCreateS} s`)
  for (const s of held) await s.kill().catch(() => undefined)
  await srv.stop()
  mark('end')
  return out
}

export function serveSection(sv, host) {
  if (!sv) return []
  const cell = (st) => (st ? `${st.median} (${st.min}–${st.max})` : '—')
  const ratio = (a, b) => (a && b && b.median > 0 ? `${(a.median / b.median).toFixed(2)}x` : '—')
  const lines = [
    '## agent serve through the e2b SDK (issue 13)',
    '',
    `${host.runsc}, ${host.nproc} cores, gVisor. Milliseconds, median (min–max) of N, after a warm-up. Clients are the real \`e2b\` SDK in the bench's node process against an \`agent serve\` child on 127.0.0.1. Create-to-first-command is \`Sandbox.create('python')\` + \`commands.run('true')\`. With the pool, each create starts once \`/health\` reports the pool refilled to 2; with no pool, a second server on the same state dir (started after the first stopped). The raw and channel rows run interleaved with the SDK row, in the same sandbox: \`runsc --root <agent's root> exec <container> true\` from node, and \`/bin/true\` over agent-init's exec channel on a new connection each.`,
    '',
    '| figure | N | median (min–max) ms | against | ratio | overhead ms |',
    '|---|---:|---:|---|---:|---:|',
    `| create-to-first-command, \`--pool python=2\` (refilled between creates) | ${sv.pool.n} | ${cell(sv.pool)} | no pool | ${ratio(sv.pool, sv.cold)} | ${round(sv.pool.median - sv.cold.median)} |`,
    `| create-to-first-command, no pool (cold boot) | ${sv.cold.n} | ${cell(sv.cold)} | | | |`,
    `| pool refill after a claim (first command answered to /health showing 2 again; a cold boot in the background) | ${sv.refill.n} | ${cell(sv.refill)} | | | |`,
    `| \`commands.run('true')\` through the SDK | ${sv.run.sdk.n} | ${cell(sv.run.sdk)} | raw \`runsc exec\` true | ${ratio(sv.run.sdk, sv.run.raw)} | ${round(sv.run.sdk.median - sv.run.raw.median)} |`,
    `| raw \`runsc exec <ctr> true\`, same sandbox | ${sv.run.raw.n} | ${cell(sv.run.raw)} | | | |`,
  ]
  if (sv.run.channel) lines.push(`| \`/bin/true\` over the exec channel, new connection, same sandbox | ${sv.run.channel.n} | ${cell(sv.run.channel)} | SDK \`commands.run\` | ${ratio(sv.run.sdk, sv.run.channel)} | ${round(sv.run.sdk.median - sv.run.channel.median)} |`)
  lines.push(
    '',
    '| server memory (`agent serve`, /proc/PID/status) | RSS MiB | peak RSS since that server started (VmHWM) MiB |',
    '|---|---:|---:|',
    `| idle, no pool, no sandbox (2 s after start) | ${mib(sv.rssIdle.rss)} | ${mib(sv.rssIdle.hwm)} |`,
    `| idle with a full \`--pool python=2\` | ${mib(sv.rssIdlePool.rss)} | ${mib(sv.rssIdlePool.hwm)} |`,
    `| pool server after the runs above (${sv.pool.n + 1} claims, ${sv.run.sdk.n + 2} × 2–3 execs) | ${mib(sv.rssPeakPoolServer.rss)} | ${mib(sv.rssPeakPoolServer.hwm)} |`,
    `| no-pool server with ${sv.manyCount} sandboxes running (after the cold creates; each ran a command, then one more in all of them at once)${sv.manyCount < 16 ? ` — ${sv.manyCount}, not 16` : ''} | ${mib(sv.rssMany.rss)} | ${mib(sv.rssMany.hwm)} |`,
    '',
    `The pool filled (2 VMs) ${round(sv.poolFillMs / 1000)} s after the server answered; the ${sv.manyCount} sandboxes took ${sv.manyCreateS} s to create, two at a time.`,
    '',
    `Machine load (1/5/15-minute load average) during the section: ${sv.load.map((x) => `${x.at} ${x.loadavg.join('/')}`).join('; ')}.`,
    '',
  )
  for (const n of sv.notes) lines.push(`- ${n}`)
  if (sv.notes.length) lines.push('')
  return lines
}
