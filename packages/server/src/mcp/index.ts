/**
 * agent's MCP server: sandboxes as tools for AI assistants, over the service floor.
 *  - `agent mcp` (packages/cli/src/commands/mcp.ts) calls serveStdio();
 *  - `agent serve` serves the same tools over Streamable HTTP at /mcp (../mcp-route.ts).
 */
import type {Readable, Writable} from 'node:stream'
import {StdioServerTransport} from '@modelcontextprotocol/sdk/server/stdio.js'
import {errorMessage, logger, type ServiceContext} from '../floor.js'
import {resolveMcpOptions, type McpOptions} from './options.js'
import {McpSandboxes} from './sandboxes.js'
import {createMcpServer} from './tools.js'

export {DEFAULT_MCP_OPTIONS, OPTION_FLAGS, resolveMcpOptions, type McpOptions} from './options.js'
export {McpSandboxes} from './sandboxes.js'
export {createMcpServer, TOOL_NAMES, SERVER_INFO} from './tools.js'

export interface StdioServe {
  options: McpOptions
  /** MCP sandboxes left by MCP servers that died: cleaned, or adopted when kept and still in their lifetime. */
  adopted: {cleaned: number; adopted: number}
  /** Resolves once the client has gone (stdin closed) or `stop` was called, and the server's sandboxes are cleaned. */
  done: Promise<void>
  stop(): Promise<void>
}

/**
 * Serves MCP over stdio until stdin ends or the context's signal aborts. stdout carries only
 * JSON-RPC: diagnostics go to stderr (the logger), and console.log is sent there too.
 */
export interface StdioIo {
  stdin?: Readable
  stdout?: Writable
  /** Destroys the given sandboxes after this process has gone (else they are cleaned before `done`). */
  handOff?: (ids: string[]) => void
}

export async function serveStdio(ctx: ServiceContext, overrides: Partial<McpOptions> = {}, io: StdioIo = {}): Promise<StdioServe> {
  const stdin = io.stdin ?? process.stdin
  const stdout = io.stdout ?? process.stdout
  if (stdout === process.stdout) console.log = (...args: unknown[]) => console.error(...args)
  const options = resolveMcpOptions(ctx.paths.root, overrides)
  const sandboxes = new McpSandboxes(ctx, options)
  const adopted = await sandboxes.adopt()
  const server = createMcpServer(sandboxes)
  const transport = new StdioServerTransport(stdin, stdout)

  let stopping: Promise<void> | undefined
  let finished!: () => void
  const done = new Promise<void>((r) => (finished = r))
  const stop = () =>
    (stopping ??= (async () => {
      logger().debug('agent mcp: stopping')
      await sandboxes.close(io.handOff).catch((e) => logger().warn(`agent mcp: cleaning sandboxes: ${errorMessage(e)}`))
      await server.close().catch(() => undefined)
      finished()
    })())
  transport.onerror = (err) => logger().warn(`agent mcp: ${errorMessage(err)}`)
  stdin.once('end', () => void stop())
  stdin.once('close', () => void stop())
  stdout.on('error', (err) => {
    // The client went away (EPIPE): nobody can read results any more.
    logger().debug(`agent mcp: stdout: ${errorMessage(err)}`)
    void stop()
  })
  ctx.signal?.addEventListener('abort', () => void stop(), {once: true})
  await server.connect(transport)
  return {options, adopted, done, stop}
}
