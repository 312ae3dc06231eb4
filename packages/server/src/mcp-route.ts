/**
 * MCP over Streamable HTTP at /mcp, for `agent serve`: the same tools as `agent mcp`
 * (mcp/tools.ts), behind the same API key as the control plane (X-API-Key; app.ts checks it
 * before any route runs). Stateless: each POST gets its own MCP server over the one set of MCP
 * sandboxes of this serve process, so clients need no session and a restart loses nothing.
 * Options come from the "mcp" object of <state>/config.json (mcp/options.ts).
 */
import {StreamableHTTPServerTransport} from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import type {FastifyInstance} from 'fastify'
import {errorMessage, logger} from './floor.js'
import {resolveMcpOptions} from './mcp/options.js'
import {McpSandboxes} from './mcp/sandboxes.js'
import {createMcpServer} from './mcp/tools.js'
import type {Sandboxes} from './sandboxes.js'

export const MCP_PATH = '/mcp'

/** One McpSandboxes per serve process, shared by its listeners (TCP and unix socket), cleaned when the last closes. */
const shared = new WeakMap<Sandboxes, {mcp: Promise<McpSandboxes>; users: number}>()

function sandboxesFor(owner: Sandboxes): {mcp: Promise<McpSandboxes>; release: () => Promise<void>} {
  let entry = shared.get(owner)
  if (!entry) {
    const mcp = (async () => {
      const m = new McpSandboxes(owner.ctx, resolveMcpOptions(owner.ctx.paths.root))
      const a = await m.adopt()
      if (a.cleaned || a.adopted) logger().info(`agent serve: MCP: cleaned ${a.cleaned} sandbox(es) left by MCP servers that died, adopted ${a.adopted}`)
      return m
    })()
    entry = {mcp, users: 0}
    shared.set(owner, entry)
  }
  const e = entry
  e.users++
  return {
    mcp: e.mcp,
    release: async () => {
      if (--e.users > 0) return
      shared.delete(owner)
      await (await e.mcp).close().catch((err) => logger().warn(`MCP: cleaning sandboxes: ${errorMessage(err)}`))
    },
  }
}

function rpcError(code: number, message: string) {
  return {jsonrpc: '2.0', error: {code, message}, id: null}
}

export async function registerMcpRoute(app: FastifyInstance, d: {sandboxes: Sandboxes}): Promise<void> {
  const {mcp, release} = sandboxesFor(d.sandboxes)
  const sandboxes = await mcp
  app.addHook('onClose', async () => release())
  const bodyLimit = Math.ceil((sandboxes.opts.maxFileBytes * 4) / 3) + 1024 * 1024

  app.post(MCP_PATH, {config: {plane: 'control'}, bodyLimit}, async (req, reply) => {
    const server = createMcpServer(sandboxes)
    const transport = new StreamableHTTPServerTransport({sessionIdGenerator: undefined, enableJsonResponse: true})
    reply.raw.on('close', () => {
      void transport.close().catch(() => undefined)
      void server.close().catch(() => undefined)
    })
    reply.hijack()
    try {
      await server.connect(transport)
      await transport.handleRequest(req.raw, reply.raw, req.body)
    } catch (err) {
      logger().warn(`MCP request failed: ${errorMessage(err)}`)
      if (!reply.raw.headersSent) reply.raw.writeHead(500, {'content-type': 'application/json'}).end(JSON.stringify(rpcError(-32603, `internal error: ${errorMessage(err)}`)))
    }
  })
  // Stateless: no server-to-client stream and no session to delete.
  const notAllowed = async (_req: unknown, reply: import('fastify').FastifyReply) =>
    reply.code(405).header('allow', 'POST').type('application/json').send(rpcError(-32000, 'Method not allowed: this MCP endpoint is stateless; POST JSON-RPC messages to it'))
  app.get(MCP_PATH, {config: {plane: 'control'}}, notAllowed)
  app.delete(MCP_PATH, {config: {plane: 'control'}}, notAllowed)
}
