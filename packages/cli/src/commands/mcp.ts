import {Flags} from '@oclif/core'
import {closeSync, openSync} from 'node:fs'
import {join} from 'node:path'
import {AgentCommand} from '../base-command.js'
import {cpuFlag} from '../cli/flags.js'
import {logger} from '../logging/logger.js'
import type {ServiceContext} from '../services/context.js'
import {start} from '../system/index.js'

/** The options @agent/server's MCP module takes (packages/server/src/mcp/options.ts). */
interface McpOverrides {
  allowNetwork?: boolean
  keep?: boolean
  ttlSec?: number
  maxTtlSec?: number
  timeoutSec?: number
  maxTimeoutSec?: number
  memoryMib?: number
  maxMemoryMib?: number
  cpus?: number
  maxCpus?: number
  maxSandboxes?: number
  maxOutputBytes?: number
  maxFileBytes?: number
}

/** What this command needs from @agent/server/mcp (packages/server), which builds after the CLI. */
interface McpModule {
  serveStdio(ctx: ServiceContext, o: McpOverrides, io: {handOff?: (ids: string[]) => void}): Promise<{options: Required<McpOverrides>; adopted: {cleaned: number; adopted: number}; done: Promise<void>}>
}

// A variable, so that tsc does not follow it: the server package depends on this one.
const MCP_MODULE = '@agent/server/mcp'

export default class Mcp extends AgentCommand<typeof Mcp> {
  static override enableJsonFlag = false
  static override summary = 'Serve sandboxes to AI assistants as MCP tools, over stdio (Model Context Protocol).'
  static override description = `Tools: run_code, create_sandbox, exec, write_file, read_file, list_sandboxes, destroy_sandbox, list_languages.
Start it from an MCP client (Claude Desktop, Claude Code, Cursor, ...): the client speaks JSON-RPC on stdin/stdout; diagnostics go to stderr.
Safe by default: sandboxes have no network unless a call asks for it and --allow-network is given; limits have defaults and maxima (flags below, or the "mcp" object of <state>/config.json); sandboxes get a lifetime and are destroyed when the server exits unless --keep. Tools only act on sandboxes made through MCP.
\`agent serve\` serves the same tools over Streamable HTTP at /mcp, behind its API key.`
  static override examples = [
    '<%= config.bin %> mcp',
    '<%= config.bin %> mcp --allow-network --ttl 3600',
    'claude mcp add agent -- <%= config.bin %> mcp',
  ]
  static override flags = {
    'allow-network': Flags.boolean({summary: 'Let tool calls ask for network allow_all (otherwise every sandbox has network none).'}),
    keep: Flags.boolean({summary: 'Leave sandboxes running when the server exits (their lifetime still ends them at the next start).'}),
    ttl: Flags.integer({min: 1, summary: 'Lifetime of a sandbox, in seconds, when create_sandbox gives none. [default: 900]'}),
    'max-ttl': Flags.integer({min: 1, summary: 'Longest lifetime a call may ask for, in seconds. [default: 86400]'}),
    timeout: Flags.integer({min: 1, summary: 'Command timeout in seconds when a call gives none. [default: 60]'}),
    'max-timeout': Flags.integer({min: 1, summary: 'Longest command timeout a call may ask for, in seconds. [default: 900]'}),
    memory: Flags.integer({min: 32, summary: 'Memory of a sandbox in MiB when a call gives none. [default: 512]'}),
    'max-memory': Flags.integer({min: 32, summary: 'Most memory a call may ask for, in MiB. [default: 2048]'}),
    cpus: cpuFlag({summary: 'CPUs of a sandbox when a call gives none. [default: 1]'}),
    'max-cpus': cpuFlag({summary: 'Most CPUs a call may ask for. [default: 2]'}),
    'max-sandboxes': Flags.integer({min: 1, max: 256, summary: 'Sandboxes (run_code\'s included) this server holds at once. [default: 8]'}),
    'max-output': Flags.integer({min: 1024, summary: 'Bytes of stdout and of stderr returned per command; more is cut with a marker. [default: 65536]'}),
    'max-file-size': Flags.integer({min: 1, summary: 'Largest file write_file takes and read_file returns, in bytes. [default: 10485760]'}),
  }

  async run(): Promise<void> {
    const mod = (await import(MCP_MODULE)) as McpModule
    const f = this.flags
    const server = await mod.serveStdio(await this.context(), {
      // Booleans only when given, so config.json can turn them on.
      allowNetwork: f['allow-network'] || undefined,
      keep: f.keep || undefined,
      ttlSec: f.ttl,
      maxTtlSec: f['max-ttl'],
      timeoutSec: f.timeout,
      maxTimeoutSec: f['max-timeout'],
      memoryMib: f.memory,
      maxMemoryMib: f['max-memory'],
      cpus: f.cpus,
      maxCpus: f['max-cpus'],
      maxSandboxes: f['max-sandboxes'],
      maxOutputBytes: f['max-output'],
      maxFileBytes: f['max-file-size'],
    }, {handOff: (ids) => this.cleanDetached(ids)})
    const o = server.options
    const a = server.adopted
    logger().info(`agent mcp: serving MCP on stdio (network ${o.allowNetwork ? 'allowed when asked' : 'none'}, lifetime ${o.ttlSec}s, sandboxes ${o.keep ? 'kept' : 'destroyed'} at exit)`)
    if (a.cleaned || a.adopted) logger().info(`agent mcp: cleaned ${a.cleaned} sandbox(es) left by MCP servers that died, adopted ${a.adopted}`)
    // Ends when the client closes stdin, or on the first Ctrl-C/SIGTERM (base-command.ts aborts the context's signal).
    await server.done
    logger().debug('agent mcp: stopped')
  }

  /**
   * MCP clients give a server about two seconds after closing its stdin before they kill it:
   * its sandboxes are destroyed by a detached `agent vm clean` that outlives it (output in
   * <state>/logs/mcp-clean.log).
   */
  private cleanDetached(ids: string[]): void {
    const log = openSync(join(this.paths.logs, 'mcp-clean.log'), 'a', 0o600)
    try {
      const child = start(process.execPath, [process.argv[1], 'vm', 'clean', ...ids.flatMap((id) => ['--vm', id])], {stdin: 'ignore', detached: true, stdoutFd: log, stderrFd: log})
      child.catch(() => undefined)
      child.unref()
    } finally {
      closeSync(log)
    }
    logger().info(`agent mcp: destroying ${ids.join(', ')} (agent vm clean, in the background)`)
  }
}
