/**
 * One fastify listener for everything, as the E2B SDK expects when E2B_API_URL and
 * E2B_SANDBOX_URL point at the same origin:
 *  - no E2b-Sandbox-Id header: the control plane (X-API-Key);
 *  - E2b-Sandbox-Id + E2b-Sandbox-Port 49983: envd (Connect RPC, /files, /health);
 *  - E2b-Sandbox-Id + E2b-Sandbox-Port 49999: the code interpreter (/execute, /contexts).
 * Per-sandbox calls carry the sandbox's access token (X-Access-Token or
 * E2B-Traffic-Access-Token, as create returned it) or the API key.
 */
import {timingSafeEqual} from 'node:crypto'
import {Transform, type Readable} from 'node:stream'
import {createGunzip} from 'node:zlib'
import multipart from '@fastify/multipart'
import {fastifyConnectPlugin} from '@connectrpc/connect-fastify'
import Fastify, {type FastifyInstance, type FastifyReply, type FastifyRequest} from 'fastify'
import {callValues, envdRoutes, type SandboxCall} from './envd.js'
import {errorMessage, logger} from './floor.js'
import {guestPath} from './guest.js'
import {HttpError, httpStatusOf} from './http-errors.js'
import type {Runtimes, SandboxRuntime} from './runtime.js'
import {ENVD_VERSION, timeoutSec, type Sandbox, type Sandboxes} from './sandboxes.js'

export const ENVD_PORT = 49983
export const INTERPRETER_PORT = 49999

export interface AppLimits {
  /** Largest control-plane or RPC request body. */
  bodyBytes: number
  /** Largest file upload or download through /files. */
  fileBytes: number
}

export const DEFAULT_APP_LIMITS: AppLimits = {bodyBytes: 1024 * 1024, fileBytes: 100 * 1024 * 1024}

type Plane = 'control' | 'envd' | 'interpreter' | 'any'

declare module 'fastify' {
  interface FastifyRequest {
    sandboxCall: SandboxCall | null
  }
  interface FastifyContextConfig {
    plane?: Plane
  }
}

function sameSecret(a: string | undefined, b: string): boolean {
  if (typeof a !== 'string') return false
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/** E2B's error body. */
function sendError(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply.code(status).type('application/json').send({code: status, message})
}

function usernameOf(req: FastifyRequest): string | undefined {
  const q = (req.query as Record<string, unknown> | undefined)?.username
  if (typeof q === 'string' && q) return q
  const auth = header(req, 'authorization')
  if (auth?.startsWith('Basic ')) {
    const user = Buffer.from(auth.slice(6), 'base64').toString('utf8').split(':')[0]
    if (user) return user
  }
  return undefined
}

function sandboxView(sb: Sandbox, token: string) {
  const {vm, meta} = sb
  return {
    sandboxID: vm.id,
    templateID: meta.templateID,
    alias: meta.templateID,
    clientID: 'agent',
    startedAt: meta.startedAt,
    // No lifetime (a CLI VM nobody gave one): the far future.
    endAt: new Date(meta.endAt ?? Date.parse('9999-12-31T23:59:59Z')).toISOString(),
    cpuCount: vm.cpus,
    memoryMB: vm.memoryMib,
    diskSizeMB: vm.diskMib,
    metadata: meta.metadata,
    state: vm.status === 'running' ? 'running' : 'paused',
    envdVersion: ENVD_VERSION,
    envdAccessToken: token,
    trafficAccessToken: token,
    domain: null,
  }
}

function createView(sb: Sandbox, token: string) {
  return {
    sandboxID: sb.vm.id,
    templateID: sb.meta.templateID,
    alias: sb.meta.templateID,
    clientID: 'agent',
    envdVersion: ENVD_VERSION,
    envdAccessToken: token,
    trafficAccessToken: token,
    domain: null,
  }
}

/** Counts bytes through; errors with 413 past the limit. */
function limited(max: number): Transform {
  let n = 0
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      n += chunk.length
      if (n > max) cb(Object.assign(new Error(`upload larger than the ${max}-byte limit`), {statusCode: 413}))
      else cb(null, chunk)
    },
  })
}

export interface AppDeps {
  apiKey: string
  sandboxes: Sandboxes
  runtimes: Runtimes
  limits: AppLimits
}

export async function buildApp(d: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({logger: false, bodyLimit: d.limits.bodyBytes, forceCloseConnections: true, return503OnClosing: true})
  app.decorateRequest('sandboxCall', null)

  app.setErrorHandler((err, _req, reply) => {
    const {status, message} = httpStatusOf(err)
    if (status >= 500) logger().warn(`request failed: ${message}`)
    if (reply.sent || reply.raw.headersSent) return
    return sendError(reply, status, message)
  })
  app.setNotFoundHandler((req, reply) => sendError(reply, 404, `no route for ${req.method} ${req.url.split('?')[0]}`))

  // Authentication and routing by header, before any body is read.
  app.addHook('onRequest', async (req, reply) => {
    const plane = req.routeOptions.config?.plane
    const sid = header(req, 'e2b-sandbox-id')
    const apiKeyOk = sameSecret(header(req, 'x-api-key'), d.apiKey)
    if (!sid) {
      if (plane === 'envd' || plane === 'interpreter') return sendError(reply, 400, 'this endpoint belongs to a sandbox: send the E2b-Sandbox-Id and E2b-Sandbox-Port headers')
      if (req.url === '/health' || req.url.startsWith('/health?')) return
      if (!apiKeyOk) return sendError(reply, 401, header(req, 'x-api-key') ? 'Invalid API key' : 'Missing X-API-Key header')
      return
    }
    const port = Number(header(req, 'e2b-sandbox-port') ?? ENVD_PORT)
    const want: Plane = port === INTERPRETER_PORT ? 'interpreter' : port === ENVD_PORT ? 'envd' : 'control'
    if (want === 'control') return sendError(reply, 502, `sandbox port ${port} is not served by agent serve (only ${ENVD_PORT} and ${INTERPRETER_PORT})`)
    if (plane !== want && plane !== 'any') return sendError(reply, 404, `no route for ${req.method} ${req.url.split('?')[0]} on sandbox port ${port}`)
    if (!apiKeyOk && !sameSecret(header(req, 'x-access-token'), d.sandboxes.token(sid)) && !sameSecret(header(req, 'e2b-traffic-access-token'), d.sandboxes.token(sid))) {
      // An unknown sandbox is 404 whatever the token; a known one with a wrong token is 401.
      await d.sandboxes.get(sid)
      return sendError(reply, 401, 'Invalid or missing sandbox access token (X-Access-Token)')
    }
    if (want === 'interpreter') {
      const sb = await d.sandboxes.get(sid)
      if (!sb.meta.interpreter) return sendError(reply, 502, `sandbox ${sid} has no code interpreter: create it from template code-interpreter-v1`)
    }
    const isHealth = req.url === '/health' || req.url.startsWith('/health?')
    let rt: SandboxRuntime
    try {
      rt = await d.runtimes.get(sid)
    } catch (err) {
      // isRunning() reads 502 as "not running": say so for /health of a gone sandbox too.
      if (isHealth) return sendError(reply, 502, errorMessage(err))
      throw err
    }
    // envd treats Connect-Timeout-Ms as the process's lifetime, not as the RPC's deadline:
    // take it away from Connect so a stream is not cut short before its process ends.
    const t = Number(header(req, 'connect-timeout-ms') ?? 0)
    delete req.raw.headers['connect-timeout-ms']
    const ka = Number(header(req, 'keepalive-ping-interval') ?? 0)
    req.sandboxCall = {rt, timeoutMs: Number.isFinite(t) && t > 0 ? t : 0, keepaliveMs: Math.min(Number.isFinite(ka) && ka > 0 ? ka * 1000 : 30_000, 50_000), username: usernameOf(req)}
  })

  app.get('/health', {config: {plane: 'any'}}, async (req, reply) => {
    if (req.sandboxCall) return reply.code(204).send()
    return {status: 'ok', pool: d.sandboxes.poolSizes()}
  })

  // ------------------------------------------------------------ control plane
  const control = {config: {plane: 'control' as Plane}}

  const create = async (req: FastifyRequest, reply: FastifyReply) => {
    const sb = await d.sandboxes.create((req.body ?? {}) as object)
    return reply.code(201).send(createView(sb, d.sandboxes.token(sb.vm.id)))
  }
  app.post('/v2/sandboxes', control, create)
  app.post('/sandboxes', control, create)

  const list = async (req: FastifyRequest, reply: FastifyReply) => {
    const q = req.query as Record<string, string | string[] | undefined>
    const want = new Map<string, string>()
    if (typeof q.metadata === 'string' && q.metadata) {
      for (const [k, v] of new URLSearchParams(q.metadata)) want.set(safeDecode(k), safeDecode(v))
    }
    const states = new Set([q.state ?? []].flat().flatMap((s) => String(s).split(',')).filter(Boolean))
    const limit = q.limit === undefined ? 100 : Number(q.limit)
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new HttpError(400, 'limit must be a whole number from 1 to 1000')
    const offset = q.nextToken ? Number(Buffer.from(String(q.nextToken), 'base64url').toString()) : 0
    if (!Number.isInteger(offset) || offset < 0) throw new HttpError(400, 'invalid nextToken')
    let all = (await d.sandboxes.list()).map((sb) => sandboxView(sb, d.sandboxes.token(sb.vm.id)))
    all = all.filter((s) => [...want].every(([k, v]) => s.metadata[k] === v))
    if (states.size) all = all.filter((s) => states.has(s.state))
    if (typeof q.template === 'string' && q.template) all = all.filter((s) => s.templateID === q.template)
    all.sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.sandboxID.localeCompare(b.sandboxID))
    const page = all.slice(offset, offset + limit)
    if (offset + limit < all.length) reply.header('x-next-token', Buffer.from(String(offset + limit)).toString('base64url'))
    return page.map(({envdAccessToken: _a, trafficAccessToken: _b, domain: _c, ...s}) => s)
  }
  app.get('/v2/sandboxes', control, list)
  app.get('/sandboxes', control, list)

  app.get<{Params: {id: string}}>('/sandboxes/:id', control, async (req) => {
    const sb = await d.sandboxes.get(req.params.id)
    return sandboxView(sb, d.sandboxes.token(sb.vm.id))
  })
  app.delete<{Params: {id: string}}>('/sandboxes/:id', control, async (req, reply) => {
    await d.sandboxes.kill(req.params.id)
    return reply.code(204).send()
  })
  app.post<{Params: {id: string}}>('/sandboxes/:id/timeout', control, async (req, reply) => {
    const body = (req.body ?? {}) as {timeout?: unknown}
    if (body.timeout === undefined) throw new HttpError(400, 'timeout is required')
    await d.sandboxes.setTimeout(req.params.id, timeoutSec(body.timeout, 0))
    return reply.code(204).send()
  })
  const connect = async (req: FastifyRequest<{Params: {id: string}}>, reply: FastifyReply) => {
    const body = (req.body ?? {}) as {timeout?: unknown}
    const sec = body.timeout === undefined || body.timeout === null ? undefined : timeoutSec(body.timeout, 0)
    const sb = await d.sandboxes.connect(req.params.id, sec)
    return reply.code(200).send(createView(sb, d.sandboxes.token(sb.vm.id)))
  }
  app.post('/v2/sandboxes/:id/connect', control, connect)
  app.post('/sandboxes/:id/connect', control, connect)

  // ------------------------------------------------------------ envd: Connect RPC
  // The plugin adds its routes without our config: mark them as envd's as they are added.
  app.addHook('onRoute', (route) => {
    if (/^\/(process\.Process|filesystem\.Filesystem)\//.test(route.url)) route.config = {...(route.config ?? {}), plane: 'envd'}
  })
  await app.register(async (scope) => {
    await scope.register(fastifyConnectPlugin, {
      routes: envdRoutes,
      readMaxBytes: d.limits.bodyBytes,
      jsonOptions: {ignoreUnknownFields: true},
      contextValues: (req) => callValues(req.sandboxCall!),
    })
  })

  // ------------------------------------------------------------ envd: /files
  await app.register(async (scope) => {
    scope.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload))
    await scope.register(multipart, {limits: {fileSize: d.limits.fileBytes, files: 1000, fields: 100, parts: 1100}, throwFileSizeLimit: true})
    const envd = {config: {plane: 'envd' as Plane}}

    scope.get('/files', envd, async (req, reply) => {
      const call = req.sandboxCall!
      const path = guestPath((req.query as {path?: unknown}).path, call.username)
      const data = await call.rt.fs.read(path, d.limits.fileBytes)
      return reply.type('application/octet-stream').header('content-disposition', `attachment; filename="${encodeURIComponent(path.split('/').pop() ?? 'file')}"`).send(data)
    })

    scope.post('/files', envd, async (req, reply) => {
      const call = req.sandboxCall!
      const qpath = (req.query as {path?: unknown}).path
      const written: {name: string; type: 'file'; path: string}[] = []
      const upload = async (path: string, body: Readable) => {
        const ac = new AbortController()
        const lim = limited(d.limits.fileBytes)
        let failure: unknown
        const onErr = (e: unknown) => {
          failure ??= e
          ac.abort(e)
        }
        body.on('error', onErr)
        lim.on('error', onErr)
        body.pipe(lim)
        try {
          await call.rt.fs.write(path, lim, ac.signal)
        } catch (err) {
          throw failure ?? err
        }
        if (failure) throw failure
        written.push({name: path.split('/').pop() ?? path, type: 'file', path})
      }
      if (req.isMultipart()) {
        for await (const part of req.parts()) {
          if (part.type !== 'file') continue
          const path = guestPath(typeof qpath === 'string' && qpath ? qpath : part.filename, call.username)
          await upload(path, part.file)
        }
      } else {
        const ct = String(req.headers['content-type'] ?? '')
        if (!ct.startsWith('application/octet-stream')) throw new HttpError(415, 'POST /files takes multipart/form-data or application/octet-stream')
        const path = guestPath(qpath, call.username)
        let body = req.body as Readable
        const enc = String(req.headers['content-encoding'] ?? '')
        if (enc === 'gzip') body = body.pipe(createGunzip())
        else if (enc && enc !== 'identity') throw new HttpError(415, `Content-Encoding ${enc} is not supported`)
        await upload(path, body)
      }
      if (written.length === 0) throw new HttpError(400, 'no file in the request')
      return reply.code(200).send(written)
    })
  })

  // ------------------------------------------------------------ code interpreter
  const interp = {config: {plane: 'interpreter' as Plane}}
  app.post('/execute', interp, async (req, reply) => {
    const call = req.sandboxCall!
    const body = (req.body ?? {}) as {code?: unknown; context_id?: unknown; language?: unknown; env_vars?: unknown}
    if (typeof body.code !== 'string') throw new HttpError(400, 'code must be a string')
    const env = body.env_vars && typeof body.env_vars === 'object' ? (body.env_vars as Record<string, string>) : {}
    const c = call.rt.interpreter.contextFor(body.context_id, body.language)
    reply.hijack()
    const res = reply.raw
    res.writeHead(200, {'content-type': 'application/x-ndjson', 'cache-control': 'no-cache'})
    await c.run(body.code, env, (m) => {
      if (!res.destroyed) res.write(JSON.stringify(m) + '\n')
    })
    res.end()
  })
  app.post('/contexts', interp, async (req) => {
    const body = (req.body ?? {}) as {language?: unknown; cwd?: unknown}
    return req.sandboxCall!.rt.interpreter.create(body.language, body.cwd).view()
  })
  app.get('/contexts', interp, async (req) => req.sandboxCall!.rt.interpreter.list())
  app.delete<{Params: {id: string}}>('/contexts/:id', interp, async (req, reply) => {
    req.sandboxCall!.rt.interpreter.remove(req.params.id)
    return reply.code(204).send()
  })
  app.post<{Params: {id: string}}>('/contexts/:id/restart', interp, async (req, reply) => {
    req.sandboxCall!.rt.interpreter.get(req.params.id).restart()
    return reply.code(204).send()
  })

  await (await import('./mcp-route.js')).registerMcpRoute(app, d) // MCP over Streamable HTTP at /mcp (mcp-route.ts)
  return app
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}
