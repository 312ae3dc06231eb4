/**
 * The one home for choosing a launcher: the preference order, the explicit choice
 * (--launcher, AGENT_LAUNCHER) and the default. Doctor and the VM service both ask here.
 */
import {AgentError, errorMessage, usageError} from '../errors.js'
import {LAUNCHER_NAMES, type LauncherName} from '../state/vm-record.js'
import type {Availability, Launcher} from './launcher.js'

// Launcher modules are imported only when used, to keep start-up cheap.
const FACTORIES: Record<LauncherName, () => Promise<Launcher>> = {
  gvisor: async () => new (await import('./gvisor.js')).GvisorLauncher(),
  runc: async () => new (await import('./runc.js')).RuncLauncher(),
  krunvm: async () => new (await import('./krunvm/launcher.js')).KrunvmLauncher(),
  kubernetes: async () => new (await import('./kubernetes/launcher.js')).KubernetesLauncher(),
}

/**
 * Preference when nothing is asked for: krunvm (real microVMs, needs KVM or
 * Hypervisor.framework), gvisor (VM-grade isolation without KVM), runc (fastest, weakest).
 * kubernetes is never a default: placing sandboxes on a cluster is chosen explicitly.
 */
export const DEFAULT_ORDER: readonly LauncherName[] = ['krunvm', 'gvisor', 'runc']
/** Every launcher, for doctor and list: the default order, then those only chosen explicitly. */
const ALL_ORDER: readonly LauncherName[] = [...DEFAULT_ORDER, ...LAUNCHER_NAMES.filter((n) => !DEFAULT_ORDER.includes(n))]

/** Launchers whose sandboxes live elsewhere and can be found there without a database row (Launcher.discover). */
const DISCOVERING: readonly LauncherName[] = ['kubernetes']

const cache = new Map<LauncherName, Promise<Launcher>>()

export function launcher(name: LauncherName): Promise<Launcher> {
  if (!cache.has(name)) cache.set(name, FACTORIES[name]())
  return cache.get(name)!
}

/** The launchers that can find their VMs without the database (only these are loaded for it). */
export async function discoveringLaunchers(): Promise<Launcher[]> {
  const out: Launcher[] = []
  for (const name of DISCOVERING) {
    const l = await launcher(name).catch(() => undefined)
    if (l?.discover) out.push(l)
  }
  return out
}

/** Every launcher, each loaded on its own so that one broken module cannot hide the others. */
export async function allLaunchers(): Promise<Launcher[]> {
  return Promise.all(
    ALL_ORDER.map(async (name) => {
      try {
        return await launcher(name)
      } catch (err) {
        return brokenLauncher(name, `cannot load the ${name} launcher: ${errorMessage(err)}`)
      }
    }),
  )
}

function brokenLauncher(name: LauncherName, reason: string): Launcher {
  const no = async () => {
    throw new AgentError('unavailable', reason)
  }
  return {
    name,
    summary: reason,
    capabilities: {networkNone: {why: reason}, egressFilter: {why: reason}, files: {why: reason}, sweepsOrphans: false, tty: false},
    available: async () => ({ok: false, reason}),
    checks: async () => [],
    create: no,
    start: no,
    exec: no,
    stop: no,
    remove: no,
    status: no,
    usage: async () => ({unknown: {all: reason}}),
    stoppedFiles: no,
    snapshot: no,
  }
}

export function checkLauncherName(name: string): LauncherName {
  if (!(LAUNCHER_NAMES as readonly string[]).includes(name))
    throw usageError(`unknown launcher "${name}": choose one of ${LAUNCHER_NAMES.join(', ')}`)
  return name as LauncherName
}

/** The launcher asked for in the environment: AGENT_LAUNCHER, or its old name AGENT_RUNTIME. */
export function launcherFromEnv(env: NodeJS.ProcessEnv = process.env): {value: string; source: string} | undefined {
  if (env.AGENT_LAUNCHER) return {value: env.AGENT_LAUNCHER, source: `AGENT_LAUNCHER=${env.AGENT_LAUNCHER}`}
  if (env.AGENT_RUNTIME) return {value: env.AGENT_RUNTIME, source: `AGENT_RUNTIME=${env.AGENT_RUNTIME}`}
  return undefined
}

export interface LauncherChoice {
  launcher: Launcher
  reason: string
}

/** --launcher, then AGENT_LAUNCHER (AGENT_RUNTIME), then the first usable in DEFAULT_ORDER. */
export async function chooseLauncher(explicit?: string, env: NodeJS.ProcessEnv = process.env): Promise<LauncherChoice> {
  const fromEnv = launcherFromEnv(env)
  const asked = explicit ?? fromEnv?.value
  if (asked) {
    const l = await launcher(checkLauncherName(asked))
    const a = await l.available()
    if (!a.ok) throw unusable(l.name, a)
    return {launcher: l, reason: explicit ? `--launcher ${asked}` : fromEnv!.source}
  }
  // One at a time, stopping at the first usable: each check runs a program.
  const seen: Array<Availability & {name: LauncherName; summary: string}> = []
  let chosen: Launcher | undefined
  for (const l of await allLaunchers()) {
    if (!DEFAULT_ORDER.includes(l.name)) continue
    const a: Availability = await l.available().catch((err) => ({ok: false, reason: errorMessage(err)}))
    seen.push({name: l.name, summary: l.summary, ...a})
    if (a.ok) {
      chosen = l
      break
    }
  }
  const pick = pickDefault(seen)
  if (!chosen) throw new AgentError('unavailable', pick.reason, {hint: 'run `agent doctor` to see what is missing'})
  return {launcher: chosen, reason: pick.reason}
}

/** The first usable launcher in DEFAULT_ORDER, and a sentence saying why (what was skipped). */
export function pickDefault(reports: ReadonlyArray<Availability & {name: LauncherName; summary: string}>): {name: LauncherName | null; reason: string} {
  const skipped: string[] = []
  const ordered = [...reports].filter((r) => DEFAULT_ORDER.includes(r.name)).sort((a, b) => rank(a.name) - rank(b.name))
  for (const r of ordered) {
    if (r.ok) return {name: r.name, reason: [...skipped, `${r.name} is usable: ${r.summary}`].join('; ')}
    skipped.push(`${r.name} is not usable (${r.reason ?? 'unavailable'})`)
  }
  return {name: null, reason: `no launcher is usable: ${skipped.join('; ')}`}
}

export function rank(name: LauncherName): number {
  const i = ALL_ORDER.indexOf(name)
  return i < 0 ? ALL_ORDER.length : i
}

export function unusable(name: string, a: Availability): AgentError {
  return new AgentError('unavailable', `launcher ${name} is not usable here: ${a.reason ?? 'unavailable'}`, {
    hint: a.fix ?? 'run `agent doctor` to see what is missing',
  })
}
