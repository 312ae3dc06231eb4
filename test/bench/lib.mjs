// Helpers for test/bench/bench.mjs: timing, statistics, process runs (execa, argv arrays only),
// host facts and /proc memory readings. No timing is ever asserted: the bench only reports.
import {execa} from 'execa'
import {existsSync, readFileSync, readdirSync} from 'node:fs'
import {cpus, loadavg, release, totalmem} from 'node:os'
import {join} from 'node:path'

export const now = () => performance.now()

/** Runs a program; never a shell string. Throws with the tail of its output on a non-zero exit unless `ok` accepts it. */
export async function run(file, args, opts = {}) {
  const {ok = (r) => r.exitCode === 0, ...rest} = opts
  const t0 = now()
  const res = await execa(file, args, {reject: false, ...(rest.stdio ? {} : {stdin: 'ignore', all: true}), ...rest})
  const ms = now() - t0
  if (!ok(res)) {
    const tail = String(res.all ?? res.message ?? '').trim().split('\n').slice(-6).join('\n  ')
    const err = new Error(`${file} ${args.join(' ')} -> exit ${res.exitCode ?? res.signal ?? res.code}\n  ${tail}`)
    err.result = res
    throw err
  }
  return {res, ms, stdout: String(res.stdout ?? '').trim()}
}

/** Median, min, max, N (and the raw samples) of a list of numbers. */
export function stats(samples) {
  const s = [...samples].sort((a, b) => a - b)
  const n = s.length
  if (!n) return null
  const median = n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
  return {median: round(median), min: round(s[0]), max: round(s[n - 1]), n, samples: samples.map(round)}
}

export const round = (x, d = 1) => (x == null || Number.isNaN(x) ? x : Math.round(x * 10 ** d) / 10 ** d)

/**
 * Runs `warmup` untimed rounds, then `n` timed rounds. With several functions the rounds
 * interleave (a, b, a, b, ...) so agent and its raw baseline see the same machine noise.
 */
export async function measure(fns, {n, warmup = 1}) {
  for (let i = 0; i < warmup; i++) for (const f of fns) await f()
  const out = fns.map(() => [])
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < fns.length; j++) {
      const t0 = now()
      const r = await fns[j]()
      out[j].push(typeof r === 'number' ? r : now() - t0)
    }
  }
  return out.map(stats)
}

/** Runs `fn` over `items`, at most `limit` at once; resolves to the results in order. */
export async function pool(items, limit, fn) {
  const results = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      results[i] = await fn(items[i], i)
    }
  }
  await Promise.all(Array.from({length: Math.min(limit, items.length)}, worker))
  return results
}

// ------------------------------------------------------------------ host facts

export async function hostFacts() {
  const version = async (bin, args = ['--version']) => {
    try {
      const {stdout} = await run(bin, args, {timeout: 10_000})
      return stdout.split('\n')[0]
    } catch {
      return 'not installed'
    }
  }
  let os = ''
  try {
    os = /^PRETTY_NAME="?([^"\n]*)/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? ''
  } catch {}
  return {
    date: new Date().toISOString(),
    os,
    kernel: release(),
    nproc: cpus().length,
    cpuModel: cpus()[0]?.model ?? '',
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    kvm: existsSync('/dev/kvm'),
    node: process.version,
    runsc: await version('runsc'),
    runc: await version('runc'),
    buildah: await version('buildah'),
    loadavgAtStart: loadavg().map((x) => round(x, 2)),
  }
}

// ------------------------------------------------------------------ memory from /proc and cgroups

export function memAvailableKiB() {
  const m = /^MemAvailable:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))
  return m ? Number(m[1]) : NaN
}

/** Proportional set size of a process in KiB (shared pages split between their users), 0 when gone. */
export function pssKiB(pid) {
  try {
    const m = /^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))
    return m ? Number(m[1]) : 0
  } catch {
    return 0
  }
}

export function rssKiB(pid) {
  try {
    const m = /^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : 0
  } catch {
    return 0
  }
}

/**
 * What one idle sandbox costs the host, from its memory cgroup (cgroup v1 here; agent puts each VM
 * in /agent/<id>): the processes in it (runsc: sentry, gofer, ptrace stubs; runc: agent-init),
 * the sum of their PSS and RSS, and the cgroup's own charge (anonymous memory plus page cache).
 */
export function sandboxMemory(cgroupRel) {
  const candidates = [join('/sys/fs/cgroup/memory', cgroupRel), join('/sys/fs/cgroup', cgroupRel)]
  const dir = candidates.find((d) => existsSync(join(d, 'cgroup.procs')))
  if (!dir) return null
  const pids = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number)
  let usage = NaN
  for (const f of ['memory.usage_in_bytes', 'memory.current']) {
    try {
      usage = Number(readFileSync(join(dir, f), 'utf8').trim())
      break
    } catch {}
  }
  let anon = NaN
  try {
    const stat = readFileSync(join(dir, 'memory.stat'), 'utf8')
    anon = Number((/^total_rss (\d+)/m.exec(stat) ?? /^anon (\d+)/m.exec(stat))?.[1])
  } catch {}
  return {
    processes: pids.length,
    pssMiB: round(pids.reduce((a, p) => a + pssKiB(p), 0) / 1024),
    rssMiB: round(pids.reduce((a, p) => a + rssKiB(p), 0) / 1024),
    cgroupMiB: round(usage / 2 ** 20),
    cgroupAnonMiB: round(anon / 2 ** 20),
  }
}

/** Mount points at or below `dir` (from /proc/self/mountinfo). */
export function mountsUnder(dir) {
  try {
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4])
      .filter((p) => p && (p === dir || p.startsWith(dir + '/')))
  } catch {
    return []
  }
}

/** Every direct subdirectory of `dir` that exists (for cgroup sweeps). */
export function subdirs(dir) {
  try {
    return readdirSync(dir, {withFileTypes: true}).filter((d) => d.isDirectory()).map((d) => d.name)
  } catch {
    return []
  }
}

// ------------------------------------------------------------------ rendering

const fmt = (x) => (x == null || Number.isNaN(x) ? '—' : String(round(x, x >= 100 ? 0 : 1)))

/** A row per figure: figure, median, min, max, N, raw baseline median, ratio agent/raw, absolute overhead. */
export function figuresTable(figures) {
  const lines = [
    '| figure | median ms | min | max | N | raw baseline | raw median ms | ratio agent/raw | overhead ms |',
    '|---|---:|---:|---:|---:|---|---:|---:|---:|',
  ]
  for (const f of figures) {
    const a = f.agent
    const r = f.raw
    lines.push(
      `| ${f.name} | ${fmt(a?.median)} | ${fmt(a?.min)} | ${fmt(a?.max)} | ${a?.n ?? '—'} | ${f.rawLabel ?? '—'} | ${fmt(r?.median)} | ${f.ratio == null ? '—' : `${f.ratio.toFixed(2)}x`} | ${f.overheadMs == null ? '—' : fmt(f.overheadMs)} |`,
    )
  }
  return lines.join('\n')
}

export function simpleTable(header, rows) {
  return [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.map((c) => (typeof c === 'number' ? fmt(c) : c ?? '—')).join(' | ')} |`)].join('\n')
}

/** A figure with its ratio and absolute overhead against the baseline. */
export function figure(section, name, agent, raw, rawLabel, note) {
  const ratio = agent && raw && raw.median > 0 ? round(agent.median / raw.median, 2) : null
  const overheadMs = agent && raw ? round(agent.median - raw.median) : null
  return {section, name, agent, raw: raw ?? null, rawLabel: rawLabel ?? null, ratio, overheadMs, ...(note ? {note} : {})}
}

export function loadNow() {
  return loadavg().map((x) => round(x, 2))
}
