/**
 * `agent doctor`: asks every launcher for its own checks and availability, adds the state dir
 * and the image floor's checks, and says which launcher is the default (launchers/select.ts).
 */
import {mkdirSync, unlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import type {StatePaths} from '../config/state-dir.js'
import {AgentError, errorMessage} from '../errors.js'
import {imageChecks} from '../images/checks.js'
import type {HostCheck, HostRoots, Launcher} from '../launchers/launcher.js'
import {allLaunchers, DEFAULT_ORDER, launcherFromEnv, pickDefault, rank} from '../launchers/select.js'
import type {LauncherName} from '../state/vm-record.js'
import type {ServiceContext} from './context.js'

export type DoctorCheck = HostCheck

export interface LauncherReport {
  name: LauncherName
  ok: boolean
  version?: string
  reason?: string
  fix?: string
}

export interface DoctorReport {
  /** At least one launcher is usable. */
  ok: boolean
  stateDir: string
  /** The launcher `agent vm create` picks without --launcher: the first usable in DEFAULT_ORDER. */
  defaultLauncher: LauncherName | null
  defaultReason: string
  launchers: LauncherReport[]
  checks: DoctorCheck[]
}

export type DoctorLauncher = Pick<Launcher, 'name' | 'summary' | 'available' | 'checks'>

export interface DoctorOptions {
  /** The launchers to ask (default: all of them; tests may pass fakes). */
  launchers?: readonly DoctorLauncher[]
  env?: NodeJS.ProcessEnv
  platform?: NodeJS.Platform
  roots?: Partial<HostRoots>
}

function checkStateDir(paths: StatePaths): DoctorCheck {
  const base = {id: 'state-dir', title: 'state dir', neededBy: [...DEFAULT_ORDER]}
  const fix = 'set AGENT_STATE_DIR to a writable directory (for example AGENT_STATE_DIR=$HOME/.agent)'
  try {
    mkdirSync(paths.root, {recursive: true, mode: 0o700})
    // access(2) lies for root on read-only mounts: prove it with a write.
    const probe = join(paths.root, `.doctor-${process.pid}`)
    writeFileSync(probe, '')
    unlinkSync(probe)
    return {...base, ok: true, detail: `${paths.root} is writable`}
  } catch (err) {
    return {...base, ok: false, detail: `${paths.root} is not writable: ${errorMessage(err)}`, fix}
  }
}

/** One row per check id: a prerequisite several launchers share is listed once, naming them all. */
function merge(checks: readonly DoctorCheck[]): DoctorCheck[] {
  const byId = new Map<string, DoctorCheck>()
  for (const c of checks) {
    const seen = byId.get(c.id)
    if (!seen) byId.set(c.id, {...c, neededBy: [...c.neededBy]})
    else for (const n of c.neededBy) if (!seen.neededBy.includes(n)) seen.neededBy.push(n)
  }
  for (const c of byId.values()) c.neededBy.sort((a, b) => rank(a) - rank(b))
  return [...byId.values()]
}

/** Checks every launcher's prerequisites and says which launcher is the default, and why. */
export async function runDoctor(ctx: Pick<ServiceContext, 'paths'>, o: DoctorOptions = {}): Promise<DoctorReport> {
  const env = o.env ?? process.env
  const platform = o.platform ?? process.platform
  const roots: HostRoots = {cgroupRoot: '/sys/fs/cgroup', procCgroups: '/proc/cgroups', kvm: '/dev/kvm', ...o.roots}
  const list = [...(o.launchers ?? (await allLaunchers()))].sort((a, b) => rank(a.name) - rank(b.name))

  const launchers: LauncherReport[] = []
  const checks: DoctorCheck[] = [checkStateDir(ctx.paths)]
  for (const l of list) {
    try {
      const a = await l.available()
      launchers.push({name: l.name, ok: a.ok, version: a.version, reason: a.ok ? undefined : a.reason ?? 'unavailable', fix: a.ok ? undefined : a.fix})
    } catch (err) {
      launchers.push({name: l.name, ok: false, reason: `availability check failed: ${errorMessage(err)}`})
    }
    checks.push(...(await l.checks({paths: ctx.paths, env, platform, roots}).catch((err) => [
      {id: `${l.name}-checks`, title: l.name, ok: false, detail: `cannot check: ${errorMessage(err)}`, neededBy: [l.name]},
    ])))
  }
  checks.push(...(await imageChecks(ctx.paths.root, env, [...DEFAULT_ORDER])))

  const pick = pickDefault(list.map((l, i) => ({...launchers[i]!, summary: l.summary})))
  const asked = launcherFromEnv(env)
  const override = asked ? `; ${asked.source} overrides it for this environment` : ''
  return {
    ok: launchers.some((l) => l.ok),
    stateDir: ctx.paths.root,
    defaultLauncher: pick.name,
    defaultReason: pick.reason + (pick.name ? override : ''),
    launchers,
    checks: merge(checks),
  }
}

/** Human-readable report lines. */
export function renderDoctor(r: DoctorReport): string[] {
  const mark = (ok: boolean) => (ok ? 'ok ' : 'NO ')
  const width = Math.max(...r.checks.map((c) => c.title.length), ...r.launchers.map((l) => l.name.length), 8)
  const lines: string[] = ['Launchers']
  for (const l of r.launchers) {
    lines.push(`  ${mark(l.ok)} ${l.name.padEnd(width)}  ${l.ok ? (l.version ?? 'usable') : `${l.reason}${l.version ? ` [${l.version}]` : ''}`}`)
    if (!l.ok && l.fix) lines.push(`  ${' '.repeat(4 + width)}  fix: ${l.fix}`)
  }
  lines.push('', `Default launcher: ${r.defaultLauncher ?? 'none'}`, `  ${r.defaultReason}`, '', 'Host')
  for (const c of r.checks) {
    lines.push(`  ${mark(c.ok)} ${c.title.padEnd(width)}  ${c.detail}`)
    if (!c.ok) {
      lines.push(`  ${' '.repeat(4 + width)}  needed by: ${c.neededBy.join(', ')}`)
      if (c.fix) lines.push(`  ${' '.repeat(4 + width)}  fix: ${c.fix}`)
    }
  }
  return lines
}

/** The error `agent doctor` ends with when no launcher is usable (exit 5). */
export function doctorFailure(r: DoctorReport): AgentError {
  const fixes = r.launchers.filter((l) => l.fix).map((l) => `${l.name}: ${l.fix}`)
  return new AgentError('unavailable', `no launcher is usable on this host: ${r.launchers.map((l) => `${l.name}: ${l.reason}`).join('; ')}`, {
    hint: fixes.join('; ') || 'see the checks above',
  })
}
