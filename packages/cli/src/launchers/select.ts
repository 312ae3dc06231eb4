import {AgentError, usageError} from '../errors.js'
import {LAUNCHER_NAMES, type LauncherName} from '../state/vm-record.js'
import type {Availability, Launcher} from './launcher.js'

// Launcher modules are imported only when used, to keep start-up cheap.
const FACTORIES: Record<LauncherName, () => Promise<Launcher>> = {
  gvisor: async () => new (await import('./gvisor.js')).GvisorLauncher(),
  runc: async () => new (await import('./runc.js')).RuncLauncher(),
  krunvm: async () => new (await import('./krunvm.js')).KrunvmLauncher(),
}

const cache = new Map<LauncherName, Promise<Launcher>>()

export function launcher(name: LauncherName): Promise<Launcher> {
  if (!cache.has(name)) cache.set(name, FACTORIES[name]())
  return cache.get(name)!
}

export function checkLauncherName(name: string): LauncherName {
  if (!(LAUNCHER_NAMES as readonly string[]).includes(name))
    throw usageError(`unknown runtime "${name}": choose one of ${LAUNCHER_NAMES.join(', ')}`)
  return name as LauncherName
}

export interface LauncherChoice {
  launcher: Launcher
  reason: string
}

/**
 * --runtime, then AGENT_RUNTIME, then the first usable of krunvm (real microVMs, needs KVM or
 * Hypervisor.framework), gvisor (VM-grade isolation without KVM) and runc (fastest, weakest).
 */
export async function chooseLauncher(explicit?: string, env: NodeJS.ProcessEnv = process.env): Promise<LauncherChoice> {
  const asked = explicit ?? env.AGENT_RUNTIME
  if (asked) {
    const l = await launcher(checkLauncherName(asked))
    const a = await l.available()
    if (!a.ok) throw unusable(l.name, a)
    return {launcher: l, reason: explicit ? `--runtime ${asked}` : `AGENT_RUNTIME=${asked}`}
  }
  const skipped: string[] = []
  for (const name of ['krunvm', 'gvisor', 'runc'] as const) {
    const l = await launcher(name)
    const a = await l.available()
    if (a.ok) return {launcher: l, reason: skipped.length ? `default (${skipped.join('; ')})` : 'default'}
    skipped.push(`${name}: ${a.reason ?? 'unavailable'}`)
  }
  throw new AgentError('unavailable', `no launcher is usable: ${skipped.join('; ')}`, {hint: 'run `agent doctor` to see what is missing'})
}

export function unusable(name: string, a: Availability): AgentError {
  return new AgentError('unavailable', `runtime ${name} is not usable here: ${a.reason ?? 'unavailable'}`, {
    hint: a.fix ?? 'run `agent doctor` to see what is missing',
  })
}
