import {Flags} from '@oclif/core'
import {AgentCommand} from '../base-command.js'
import {logger} from '../logging/logger.js'
import type {ServiceContext} from '../services/context.js'

/** What this command needs from @agent/server (packages/server), which builds after the CLI. */
interface ServerModule {
  DEFAULT_LISTEN: string
  parsePool(specs: readonly string[]): Record<string, number>
  serve(
    ctx: ServiceContext,
    o: {listen?: string; socket?: string; pool?: Record<string, number>; keepPool?: boolean},
  ): Promise<{url: string; socket?: string; keySource: string; keyCreated: boolean; adopted: {adopted: number; expired: number; pooled: number}; close(): Promise<void>}>
}

// A variable, so that tsc does not follow it: the server package depends on this one.
const SERVER_PACKAGE = '@agent/server'

export default class Serve extends AgentCommand<typeof Serve> {
  static override summary = 'Serve an E2B-compatible API (control plane, envd, code interpreter) over this state dir.'
  static override description = `Point the E2B SDK at it with E2B_API_URL=E2B_SANDBOX_URL=http://HOST:PORT and E2B_API_KEY.
The key is AGENT_API_KEY, or one generated once into <state>/api-key (mode 0600).
Sandboxes are VMs of the same state: \`agent vm list\` shows them, and they outlive the server.
While it runs, \`agent vm exec\`, \`vm run\` and \`vm list\` on this state dir go through it (<state>/serve.sock) and skip most of their start-up; output and exit codes are the same (AGENT_SERVE_ROUTE=off: never).`
  static override examples = ['<%= config.bin %> serve', '<%= config.bin %> serve --pool python=2', 'AGENT_API_KEY=... <%= config.bin %> serve --listen 0.0.0.0:49982']
  static override flags = {
    listen: Flags.string({summary: 'HOST:PORT to listen on (a non-loopback host needs a configured key).', default: '127.0.0.1:49982'}),
    socket: Flags.string({summary: 'Unix socket to listen on as well (default <state>/agent.sock; "" for none).'}),
    pool: Flags.string({summary: 'Keep N booted VMs of a language ready, e.g. python=2 (repeatable; also "pool" in <state>/config.json).', multiple: true}),
    'keep-pool': Flags.boolean({summary: 'Leave pool VMs running when the server stops.'}),
  }

  async run(): Promise<{url: string; socket?: string; keySource: string}> {
    const mod = (await import(SERVER_PACKAGE)) as ServerModule
    const ctx = await this.context()
    const server = await mod.serve(ctx, {
      listen: this.flags.listen,
      socket: this.flags.socket,
      pool: mod.parsePool(this.flags.pool ?? []),
      keepPool: this.flags['keep-pool'],
    })
    const a = server.adopted
    logger().info(`agent serve: listening on ${server.url}${server.socket ? ` and ${server.socket}` : ''}`)
    logger().info(`agent serve: API key ${server.keyCreated ? 'generated into' : 'from'} ${server.keySource}`)
    if (a.adopted || a.expired || a.pooled) logger().info(`agent serve: adopted ${a.adopted} sandbox(es), killed ${a.expired} past their lifetime, ${a.pooled} pool VM(s)`)
    // The first Ctrl-C/SIGTERM aborts this signal (base-command.ts): stop cleanly.
    await new Promise<void>((resolve) => this.abort.signal.addEventListener('abort', () => resolve(), {once: true}))
    logger().info('agent serve: stopping')
    await server.close()
    return {url: server.url, socket: server.socket, keySource: server.keySource}
  }
}
