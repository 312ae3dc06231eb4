/**
 * krunvm command lines, built and checked the way krunvm 0.2.6 (clap 4) parses them, so that
 * nothing agent passes can be misread as a flag or rejected after a VM is half made.
 */
import {isAbsolute} from 'node:path'
import {AgentError, unavailable, usageError} from '../../errors.js'

/** A POSIX environment variable name. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/** The krunvm name of an agent VM. */
export function krunvmName(id: string): string {
  return `agent-${id}`
}

export interface CreateArgvOptions {
  image: string
  name: string
  cpus: number
  memMib: number
  /** [hostDir, guestDir] pairs. */
  volumes?: ReadonlyArray<readonly [string, string]>
  /** [hostPort, guestPort] pairs (long form `--port` only: krunvm has no `-p`). */
  ports?: ReadonlyArray<readonly [number, number]>
}

/** `krunvm create IMAGE --name N --cpus C --mem M [--volume H:G]... [--port H:G]...`, validated as krunvm would. */
export function createArgv(o: CreateArgvOptions): string[] {
  if (!o.image || o.image.startsWith('-')) throw usageError(`image reference ${JSON.stringify(o.image)} cannot be passed to krunvm`)
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(o.name)) throw usageError(`invalid krunvm VM name ${JSON.stringify(o.name)}`)
  // krunvm takes whole vCPUs and MiB as u32; agent allows fractional CPUs.
  const cpus = Math.max(1, Math.ceil(o.cpus))
  const mem = Math.max(1, Math.ceil(o.memMib))
  const args = ['create', o.image, '--name', o.name, '--cpus', String(cpus), '--mem', String(mem)]
  for (const [host, guest] of o.volumes ?? []) {
    if (!isAbsolute(host)) throw new AgentError('internal', `krunvm volume host path must be absolute: ${host}`)
    if (host.includes(':'))
      throw unavailable(`krunvm cannot mount ${host}: its --volume HOST:GUEST syntax does not allow ':' in paths`, 'use a state dir (AGENT_STATE_DIR) whose path has no ":"')
    if (!/^\/[^/:]+$/.test(guest)) throw new AgentError('internal', `krunvm guest path must be a single top-level dir, got ${guest}`)
    args.push('--volume', `${host}:${guest}`)
  }
  for (const [h, g] of o.ports ?? []) {
    for (const p of [h, g]) if (!Number.isInteger(p) || p < 0 || p > 65_535) throw usageError(`invalid port ${p}: must be 0-65535`)
    args.push('--port', `${h}:${g}`)
  }
  return args
}

/** `krunvm start [--env K=V]... NAME CMD -- ARGS...`: the `--` keeps `-`-leading guest args away from clap. */
export function startArgv(name: string, guestArgv: readonly string[], env: readonly string[] = []): string[] {
  if (guestArgv.length === 0) throw usageError('nothing to run')
  const [cmd, ...rest] = guestArgv
  if (cmd.startsWith('-')) throw usageError(`the command to run cannot start with '-': ${JSON.stringify(cmd)}`)
  const envArgs = env.flatMap((e) => {
    if (!ENV_NAME.test(e.slice(0, e.indexOf('=')))) throw usageError(`invalid environment entry ${JSON.stringify(e)}`)
    return ['--env', e]
  })
  return ['start', ...envArgs, name, cmd, '--', ...rest]
}
