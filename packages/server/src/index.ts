/**
 * `agent serve`: an E2B-compatible API over one state dir, on the service floor. The serve
 * command builds the ServiceContext and calls serve(); everything else lives here.
 */
import {randomBytes} from 'node:crypto'
import {chmodSync, existsSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {isIP} from 'node:net'
import {join} from 'node:path'
import type {FastifyInstance} from 'fastify'
import {buildApp, DEFAULT_APP_LIMITS, type AppLimits} from './app.js'
import {AgentError, configSection, errorMessage, logger, type ServiceContext} from './floor.js'
import {Runtimes} from './runtime.js'
import {Sandboxes} from './sandboxes.js'
import {openServeRoute, type ServeRoute} from './serve-route.js'

export {ENVD_VERSION} from './sandboxes.js'

export const DEFAULT_LISTEN = '127.0.0.1:49982'

export interface ServeOptions {
  /** HOST:PORT; default 127.0.0.1:49982. */
  listen?: string
  /** Unix socket path; default <state>/agent.sock; '' for none. */
  socket?: string
  /** Warm VMs per language, e.g. {python: 2}. Merged over config.json's "pool". */
  pool?: Record<string, number>
  /** Leave pool VMs running when the server stops. */
  keepPool?: boolean
  limits?: Partial<AppLimits>
  env?: NodeJS.ProcessEnv
}

export interface RunningServer {
  /** http://HOST:PORT */
  url: string
  socket?: string
  /** Where the key came from: the AGENT_API_KEY variable, or the file it was written to. */
  keySource: string
  keyCreated: boolean
  adopted: {adopted: number; expired: number; pooled: number}
  close(): Promise<void>
}

export function parseListen(s: string): {host: string; port: number} {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s.trim())
  const port = m ? Number(m[3]) : NaN
  if (!m || port > 65535) throw new AgentError('usage', `--listen must be HOST:PORT, got ${JSON.stringify(s)}`, {hint: 'for example --listen 127.0.0.1:49982'})
  return {host: m[1] ?? m[2], port}
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true
  if (isIP(host) === 4) return host.startsWith('127.')
  if (isIP(host) === 6) return host === '::1'
  return false
}

/** `python=2,node=1` or ['python=2', 'node=1'] -> {python: 2, node: 1}. */
export function parsePool(specs: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const spec of specs.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean)) {
    const m = /^([a-z][a-z0-9_.-]*)=(\d{1,2})$/i.exec(spec)
    if (!m || Number(m[2]) > 32) throw new AgentError('usage', `--pool must be LANGUAGE=N (N from 0 to 32), got ${JSON.stringify(spec)}`, {hint: 'for example --pool python=2'})
    out[m[1].toLowerCase()] = Number(m[2])
  }
  return out
}

function configPool(root: string): Record<string, number> {
  const pool = configSection(root, 'pool', 'an object such as {"python": 2}')
  return parsePool(Object.entries(pool).map(([k, v]) => `${k}=${String(v)}`))
}

/** The API key: AGENT_API_KEY, else the one in <state>/api-key (made once, mode 0600). */
export function loadApiKey(root: string, env: NodeJS.ProcessEnv): {key: string; source: string; created: boolean} {
  if (env.AGENT_API_KEY) {
    if (env.AGENT_API_KEY.length < 16) throw new AgentError('usage', 'AGENT_API_KEY must be at least 16 characters')
    return {key: env.AGENT_API_KEY, source: 'the AGENT_API_KEY environment variable', created: false}
  }
  const file = join(root, 'api-key')
  if (existsSync(file)) {
    const key = readFileSync(file, 'utf8').trim()
    if (key.length >= 16) {
      chmodSync(file, 0o600)
      return {key, source: file, created: false}
    }
  }
  const key = `agent_${randomBytes(24).toString('hex')}`
  writeFileSync(file, `${key}\n`, {mode: 0o600, flag: 'w'})
  chmodSync(file, 0o600)
  return {key, source: file, created: true}
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** One server per state dir: <state>/serve.pid, taken with O_EXCL; a dead owner's file is taken over. */
function takeLock(root: string): () => void {
  const file = join(root, 'serve.pid')
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, `${process.pid}\n`, {flag: 'wx', mode: 0o600})
      return () => {
        try {
          if (readFileSync(file, 'utf8').trim() === String(process.pid)) rmSync(file, {force: true})
        } catch {
          /* already gone */
        }
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const pid = Number(readFileSync(file, 'utf8').trim())
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) {
        throw new AgentError('conflict', `another agent serve (pid ${pid}) already owns the state dir ${root}`, {hint: `stop it first (kill ${pid}), or give this server its own state dir with AGENT_STATE_DIR`})
      }
      rmSync(file, {force: true}) // its owner died (kill -9): take over
    }
  }
  throw new AgentError('conflict', `could not take ${file}`)
}

export async function serve(ctx: ServiceContext, o: ServeOptions = {}): Promise<RunningServer> {
  const env = o.env ?? process.env
  const root = ctx.paths.root
  const {host, port} = parseListen(o.listen ?? DEFAULT_LISTEN)
  const apiKey = loadApiKey(root, env)
  if (!isLoopback(host) && !env.AGENT_API_KEY && apiKey.created) {
    throw new AgentError('usage', `refusing to listen on ${host}, which is not a loopback address, with a key generated just now`, {hint: `set AGENT_API_KEY (or keep the key in ${apiKey.source}) and start again; the key now in that file works from the next start`})
  }
  const pool = {...configPool(root), ...(o.pool ?? {})}
  // Pool languages through the registry, so aliases work and a typo fails now.
  const reg = await ctx.runtimes()
  const normPool: Record<string, number> = {}
  for (const [lang, n] of Object.entries(pool)) normPool[reg.require(lang).runtime.language] = n

  const release = takeLock(root)
  let app: FastifyInstance | undefined
  let sandboxes: Sandboxes | undefined
  let runtimes: Runtimes | undefined
  let route: ServeRoute | undefined
  const socket = o.socket === undefined ? join(root, 'agent.sock') : o.socket
  try {
    sandboxes = new Sandboxes(ctx, {apiKey: apiKey.key, pool: normPool, keepPool: o.keepPool ?? false})
    runtimes = new Runtimes(ctx, sandboxes)
    const adopted = await sandboxes.adopt()
    app = await buildApp({apiKey: apiKey.key, sandboxes, runtimes, limits: {...DEFAULT_APP_LIMITS, ...o.limits}})
    await app.listen({host, port})
    route = await openRoute(ctx, root)
    if (socket) {
      // The lock says no live server owns this state dir, so a socket file here is stale.
      rmSync(socket, {force: true})
      const unix = await buildApp({apiKey: apiKey.key, sandboxes, runtimes, limits: {...DEFAULT_APP_LIMITS, ...o.limits}})
      await unix.listen({path: socket})
      chmodSync(socket, 0o600)
      const tcp = app
      app = undefined
      sandboxes.fillPools()
      return finish(tcp, unix)
    }
    sandboxes.fillPools()
    const tcp = app
    app = undefined
    return finish(tcp, undefined)

    function finish(tcp: FastifyInstance, unix: FastifyInstance | undefined): RunningServer {
      const addr = tcp.server.address()
      const actualPort = typeof addr === 'object' && addr ? addr.port : port
      let closing: Promise<void> | undefined
      return {
        url: `http://${host.includes(':') ? `[${host}]` : host}:${actualPort}`,
        socket: socket || undefined,
        keySource: apiKey.source,
        keyCreated: apiKey.created,
        adopted,
        close: () =>
          (closing ??= (async () => {
            await Promise.all([tcp.close(), unix?.close()]).catch((e) => logger().warn(`closing listeners: ${errorMessage(e)}`))
            await route?.close()
            runtimes!.closeAll()
            await sandboxes!.close()
            if (socket) rmSync(socket, {force: true})
            release()
          })()),
      }
    }
  } catch (err) {
    await route?.close().catch(() => undefined)
    await app?.close().catch(() => undefined)
    await sandboxes?.close().catch(() => undefined)
    release()
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new AgentError('conflict', `${host}:${port} is already in use`, {hint: 'choose another address with --listen HOST:PORT'})
    throw err
  }
}

/**
 * The CLI's route (<state>/serve.sock, serve-route.ts). Without it the CLI runs commands itself,
 * so a socket that cannot be opened (say, a path too long for a unix socket) is only a warning.
 */
async function openRoute(ctx: ServiceContext, root: string): Promise<ServeRoute | undefined> {
  try {
    return await openServeRoute(ctx, {path: join(root, 'serve.sock'), version: ctx.config.version})
  } catch (err) {
    logger().warn(`agent serve: the CLI route socket is off: ${errorMessage(err)}`)
    return undefined
  }
}
