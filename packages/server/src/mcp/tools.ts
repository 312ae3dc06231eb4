/**
 * The MCP tools, with exactly these names: run_code, create_sandbox, exec, write_file,
 * read_file, list_sandboxes, destroy_sandbox, list_languages. Inputs are zod schemas (the SDK
 * publishes them as JSON Schema and validates calls against them); every result has text for
 * the model and structuredContent matching the tool's output schema. Any failure comes back as
 * a tool error (isError: true) carrying the CLI's message and hint; nothing here throws out of
 * a handler.
 */
import {McpServer} from '@modelcontextprotocol/sdk/server/mcp.js'
import type {CallToolResult} from '@modelcontextprotocol/sdk/types.js'
import {ConnectError} from '@connectrpc/connect'
import {z} from 'zod'
import {AgentError, errorMessage, logger, type ExecResult, type VmRecord} from '../floor.js'
import {HttpError} from '../http-errors.js'
import {GUEST_HOME, type McpSandbox, type McpSandboxes} from './sandboxes.js'

export const TOOL_NAMES = ['run_code', 'create_sandbox', 'exec', 'write_file', 'read_file', 'list_sandboxes', 'destroy_sandbox', 'list_languages'] as const

/** The server's name and version as MCP clients see them. */
export const SERVER_INFO = {name: 'agent', version: '0.1.0'}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
const SANDBOX_ID = z.string().min(1).max(63).describe('A sandbox id as create_sandbox returned it, such as python-1a2b3c4d.')
const LANGUAGE = z.string().min(1).max(64).describe('A language from list_languages, optionally with a version: python, python@3.12, node, ruby, golang, ...')

const execShape = {
  exitCode: z.number().int(),
  stdout: z.string(),
  stderr: z.string(),
  stdoutTruncated: z.boolean(),
  stderrTruncated: z.boolean(),
  timedOut: z.boolean(),
  oom: z.boolean(),
  durationMs: z.number(),
}

const sandboxShape = {
  sandbox_id: z.string(),
  language: z.string(),
  version: z.string().nullable(),
  status: z.string(),
  network: z.string(),
  cpus: z.number(),
  memory_mib: z.number(),
  created_at: z.string(),
  expires_at: z.string(),
  kept_after_server_exit: z.boolean(),
}

function sandboxView(sb: McpSandbox) {
  const {vm, meta} = sb
  return {
    sandbox_id: vm.id,
    language: vm.language,
    version: vm.version ?? null,
    status: vm.status,
    network: vm.network,
    cpus: vm.cpus,
    memory_mib: vm.memoryMib,
    created_at: meta.startedAt,
    expires_at: new Date(meta.endAt).toISOString(),
    kept_after_server_exit: meta.keep,
  }
}

/** The model's view of a failure: the CLI's message, and its hint on a second line. */
export function errorText(err: unknown): string {
  if (err instanceof AgentError) return err.hint ? `${err.message}\nHint: ${err.hint}` : err.message
  if (err instanceof ConnectError) return err.rawMessage
  if (err instanceof HttpError) return err.message
  return errorMessage(err)
}

function toolError(err: unknown): CallToolResult {
  if (!(err instanceof AgentError) && !(err instanceof ConnectError) && !(err instanceof HttpError)) logger().warn(`MCP tool failed: ${errorMessage(err)}`)
  return {content: [{type: 'text', text: `Error: ${errorText(err)}`}], isError: true}
}

/** Wraps a handler: whatever it throws becomes a tool error. */
function safe<A>(fn: (args: A, extra: {signal: AbortSignal}) => Promise<CallToolResult>) {
  return async (args: A, extra: {signal: AbortSignal}): Promise<CallToolResult> => {
    try {
      return await fn(args, extra)
    } catch (err) {
      return toolError(err)
    }
  }
}

function marker(stream: string, max: number): string {
  return `\n[agent: ${stream} truncated: only the first ${max} bytes are shown]`
}

function execResult(vm: VmRecord, r: ExecResult, timeoutSec: number, maxOutput: number) {
  const structured = {
    exitCode: r.exitCode,
    stdout: r.stdout + (r.stdoutTruncated ? marker('stdout', maxOutput) : ''),
    stderr: r.stderr + (r.stderrTruncated ? marker('stderr', maxOutput) : ''),
    stdoutTruncated: r.stdoutTruncated,
    stderrTruncated: r.stderrTruncated,
    timedOut: r.timedOut,
    oom: r.oom,
    durationMs: Math.round(r.durationMs),
  }
  const lines = [`exit code ${r.exitCode} (${structured.durationMs} ms)`]
  if (r.timedOut) lines.push(`timed out after ${timeoutSec}s: the command and all its children were killed (exit 124)`)
  if (r.oom) lines.push(`ran out of memory: killed for exceeding the ${vm.memoryMib} MiB limit (exit 137)`)
  if (r.sandboxLost) lines.push(`the sandbox stopped: ${r.sandboxLost}`)
  lines.push(structured.stdout ? `--- stdout ---\n${structured.stdout.replace(/\n$/, '')}` : '--- stdout: (empty)')
  if (structured.stderr) lines.push(`--- stderr ---\n${structured.stderr.replace(/\n$/, '')}`)
  return {structured, text: lines.join('\n')}
}

function ok(text: string, structured: Record<string, unknown>): CallToolResult {
  return {content: [{type: 'text', text}], structuredContent: structured}
}

function decodeUtf8(data: Buffer): string | undefined {
  try {
    return new TextDecoder('utf-8', {fatal: true}).decode(data)
  } catch {
    return undefined
  }
}

/** Registers the eight tools on a server. */
export function registerTools(server: McpServer, sandboxes: McpSandboxes): void {
  const o = sandboxes.opts
  const TIMEOUT = z.number().int().min(1).max(o.maxTimeoutSec).describe(`Seconds before the command and all its children are killed (exit 124); default ${o.timeoutSec}.`)
  const limits = `Limits of this server: timeout default ${o.timeoutSec}s (max ${o.maxTimeoutSec}s), output capped at ${o.maxOutputBytes} bytes per stream.`

  server.registerTool(
    'run_code',
    {
      title: 'Run code once',
      description: `Run a program in a fresh, isolated sandbox (no network) that is destroyed afterwards. The code is saved as a file and run the language's way (python3 main.py, node main.js, ...). Returns stdout, stderr, the exit code, and whether it timed out or ran out of memory. ${limits}`,
      inputSchema: z.strictObject({
        language: LANGUAGE,
        code: z.string().describe('The program source.'),
        timeout_seconds: TIMEOUT.optional(),
      }),
      outputSchema: z.object({language: z.string(), version: z.string().nullable(), ...execShape}),
      annotations: {readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false},
    },
    safe(async (a, extra) => {
      const {vm, result, timeoutSec} = await sandboxes.runCode({language: a.language, code: a.code, timeoutSec: a.timeout_seconds, signal: extra.signal})
      const {structured, text} = execResult(vm, result, timeoutSec, o.maxOutputBytes)
      return ok(`${vm.language}${vm.version ? `@${vm.version}` : ''}: ${text}`, {language: vm.language, version: vm.version ?? null, ...structured})
    }),
  )

  server.registerTool(
    'create_sandbox',
    {
      title: 'Create a sandbox',
      description: `Create an isolated sandbox VM for a language that keeps its files between calls; use exec, write_file and read_file on it, and destroy_sandbox when done. It is destroyed automatically at the end of its lifetime (default ${o.ttlSec}s, max ${o.maxTtlSec}s)${o.keep ? '' : ' or when this MCP server exits'}. Network is "none" unless you ask for "allow_all" and the server allows it (${o.allowNetwork ? 'it does' : 'it does not'}). Memory default ${o.memoryMib} MiB (max ${o.maxMemoryMib}), CPUs default ${o.cpus} (max ${o.maxCpus}).`,
      inputSchema: z.strictObject({
        language: LANGUAGE,
        network: z.enum(['none', 'allow_all']).optional().describe('none (default): loopback only. allow_all: outbound network, only if the server was started with --allow-network.'),
        memory_mib: z.number().int().min(32).max(o.maxMemoryMib).optional().describe('Memory limit in MiB; a command that exceeds it is killed (exit 137).'),
        cpus: z.number().min(0.1).max(o.maxCpus).optional().describe('CPUs the sandbox may use (fractions allowed).'),
        ttl_seconds: z.number().int().min(1).max(o.maxTtlSec).optional().describe('Lifetime in seconds, after which the sandbox is destroyed.'),
      }),
      outputSchema: z.object(sandboxShape),
      annotations: {readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false},
    },
    safe(async (a) => {
      const sb = await sandboxes.create({language: a.language, network: a.network, memoryMib: a.memory_mib, cpus: a.cpus, ttlSec: a.ttl_seconds})
      const v = sandboxView(sb)
      return ok(`created sandbox ${v.sandbox_id} (${v.language}${v.version ? `@${v.version}` : ''}, network ${v.network}, ${v.memory_mib} MiB, ${v.cpus} CPU); it expires at ${v.expires_at}`, v)
    }),
  )

  server.registerTool(
    'exec',
    {
      title: 'Run a command in a sandbox',
      description: `Run a shell command line (/bin/sh -c) in a sandbox made by create_sandbox, as root, in ${GUEST_HOME} unless workdir is given. ${limits}`,
      inputSchema: z.strictObject({
        sandbox_id: SANDBOX_ID,
        command: z.string().min(1).describe('A shell command line, such as "python3 main.py" or "pip list | head".'),
        timeout_seconds: TIMEOUT.optional(),
        workdir: z.string().min(1).optional().describe(`Absolute working directory in the sandbox (default ${GUEST_HOME}).`),
        env: z.record(z.string().regex(ENV_NAME, 'environment variable names are letters, digits and _, not starting with a digit'), z.string()).optional().describe('Extra environment variables.'),
      }),
      outputSchema: z.object({sandbox_id: z.string(), ...execShape}),
      annotations: {readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false},
    },
    safe(async (a, extra) => {
      const {vm, result, timeoutSec} = await sandboxes.exec(a.sandbox_id, {command: a.command, timeoutSec: a.timeout_seconds, workdir: a.workdir, env: a.env, signal: extra.signal})
      const {structured, text} = execResult(vm, result, timeoutSec, o.maxOutputBytes)
      return ok(text, {sandbox_id: vm.id, ...structured})
    }),
  )

  server.registerTool(
    'write_file',
    {
      title: 'Write a file into a sandbox',
      description: `Create or replace a file in a sandbox (parent directories are made). A relative path is relative to ${GUEST_HOME}. At most ${o.maxFileBytes} bytes.`,
      inputSchema: z.strictObject({
        sandbox_id: SANDBOX_ID,
        path: z.string().min(1).describe(`The file's path in the sandbox (absolute, or relative to ${GUEST_HOME}).`),
        content: z.string().describe('The file content: text, or base64 with encoding "base64".'),
        encoding: z.enum(['utf8', 'base64']).optional().describe('utf8 (default) or base64 for binary content.'),
      }),
      outputSchema: z.object({sandbox_id: z.string(), path: z.string(), bytes: z.number().int()}),
      annotations: {readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false},
    },
    safe(async (a, extra) => {
      let data: Buffer
      if (a.encoding === 'base64') {
        if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(a.content.replace(/\s+/g, ''))) throw new AgentError('usage', 'content is not valid base64')
        data = Buffer.from(a.content, 'base64')
      } else data = Buffer.from(a.content, 'utf8')
      const w = await sandboxes.writeFile(a.sandbox_id, a.path, data, extra.signal)
      return ok(`wrote ${w.bytes} bytes to ${w.path} in ${w.id}`, {sandbox_id: w.id, path: w.path, bytes: w.bytes})
    }),
  )

  server.registerTool(
    'read_file',
    {
      title: 'Read a file from a sandbox',
      description: `Read a file from a sandbox. A relative path is relative to ${GUEST_HOME}. Text comes back as UTF-8; use encoding "base64" for binary files. At most ${o.maxFileBytes} bytes.`,
      inputSchema: z.strictObject({
        sandbox_id: SANDBOX_ID,
        path: z.string().min(1).describe(`The file's path in the sandbox (absolute, or relative to ${GUEST_HOME}).`),
        encoding: z.enum(['utf8', 'base64']).optional().describe('utf8 (default) or base64.'),
      }),
      outputSchema: z.object({sandbox_id: z.string(), path: z.string(), bytes: z.number().int(), encoding: z.enum(['utf8', 'base64']), content: z.string()}),
      annotations: {readOnlyHint: true, openWorldHint: false},
    },
    safe(async (a) => {
      const {id, path, data} = await sandboxes.readFile(a.sandbox_id, a.path)
      const encoding = a.encoding ?? 'utf8'
      let content: string
      if (encoding === 'base64') content = data.toString('base64')
      else {
        const text = decodeUtf8(data)
        if (text === undefined) throw new AgentError('usage', `${path} is not valid UTF-8 text (${data.length} bytes)`, {hint: 'read it with encoding "base64"'})
        content = text
      }
      return ok(content, {sandbox_id: id, path, bytes: data.length, encoding, content})
    }),
  )

  server.registerTool(
    'list_sandboxes',
    {
      title: 'List sandboxes',
      description: 'List the sandboxes created through MCP in this state dir, with their language, status, limits and expiry.',
      inputSchema: z.strictObject({}),
      outputSchema: z.object({sandboxes: z.array(z.object(sandboxShape))}),
      annotations: {readOnlyHint: true, openWorldHint: false},
    },
    safe(async () => {
      const all = (await sandboxes.list()).map(sandboxView)
      const text = all.length
        ? all.map((s) => `${s.sandbox_id}  ${s.language}${s.version ? `@${s.version}` : ''}  ${s.status}  network ${s.network}  ${s.memory_mib} MiB  expires ${s.expires_at}`).join('\n')
        : 'no sandboxes (create one with create_sandbox)'
      return ok(text, {sandboxes: all})
    }),
  )

  server.registerTool(
    'destroy_sandbox',
    {
      title: 'Destroy a sandbox',
      description: 'Destroy a sandbox and everything in it.',
      inputSchema: z.strictObject({sandbox_id: SANDBOX_ID}),
      outputSchema: z.object({sandbox_id: z.string(), destroyed: z.boolean()}),
      annotations: {readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false},
    },
    safe(async (a) => {
      const id = await sandboxes.destroy(a.sandbox_id)
      return ok(`destroyed ${id}`, {sandbox_id: id, destroyed: true})
    }),
  )

  server.registerTool(
    'list_languages',
    {
      title: 'List languages',
      description: 'List the languages (and versions) sandboxes can run, from the installed runtime plugins.',
      inputSchema: z.strictObject({}),
      outputSchema: z.object({
        languages: z.array(
          z.object({
            language: z.string(),
            aliases: z.array(z.string()),
            description: z.string().nullable(),
            versions: z.array(z.string()),
            default_version: z.string().nullable(),
            file_extensions: z.array(z.string()),
          }),
        ),
      }),
      annotations: {readOnlyHint: true, openWorldHint: false},
    },
    safe(async () => {
      const reg = await sandboxes.ctx.runtimes()
      const languages = reg.runtimes.map(({runtime: r}) => ({
        language: r.language,
        aliases: [...r.aliases],
        description: r.description ?? null,
        versions: r.versions.map((v) => v.id),
        default_version: r.defaultVersion,
        file_extensions: Object.keys(r.fileRun),
      }))
      const text = languages
        .map((l) => `${l.language}${l.aliases.length ? ` (also ${l.aliases.join(', ')})` : ''}${l.versions.length ? `: versions ${l.versions.join(', ')}, default ${l.default_version}` : ''}`)
        .join('\n')
      return ok(text || 'no languages: install a runtime plugin (agent plugins install ...)', {languages})
    }),
  )
}

/** A new MCP server with the tools, over the given sandboxes (one per connection; many may share the sandboxes). */
export function createMcpServer(sandboxes: McpSandboxes): McpServer {
  const server = new McpServer(SERVER_INFO, {
    capabilities: {tools: {}},
    instructions:
      'agent runs untrusted code in isolated sandboxes (gVisor). Use run_code for a one-off program; for several steps, create_sandbox, then exec/write_file/read_file, and destroy_sandbox when done. Sandboxes have no network unless allowed, and expire on their own.',
  })
  registerTools(server, sandboxes)
  return server
}
