import type {RoutedRequest} from '../fast/route-request.js'
import type {ServiceContext} from '../services/context.js'
import {runExecCommand, type ExecCommandInput} from './exec-command.js'
import {listWithOrigin, renderVmList} from './vm-list.js'

/**
 * What commands/vm/{exec,run,list}.ts do after oclif parsed a command line that
 * fast/route-request.ts also takes: for agent serve's route (output to the client) and for the
 * CLI's own fast path (cli/local-command.ts, output to our stdio). Returns the exit code; a
 * failure throws, for the caller's errorOutput.
 */
export async function runRoutedCommand(ctx: ServiceContext, r: RoutedRequest, o: {stdout(s: string): void; stdio?: ExecCommandInput['stdio']}): Promise<number> {
  if (r.kind === 'list') {
    const vms = await listWithOrigin(ctx, {status: r.status as never, all: r.all})
    o.stdout(r.json ? await json(vms, ctx) : renderVmList(vms, r))
    return 0
  }
  const docs = await runExecCommand(
    ctx,
    {
      vm: [r.vm],
      cmd: r.cmd,
      argv: r.argv,
      hello: r.hello,
      env: r.env,
      workdir: r.workdir,
      // Both commands default to 30 s without -i/-t (which are not routed).
      timeout: r.timeout ?? 30,
      file: r.command === 'run' ? [] : undefined,
      json: r.json,
      stdio: o.stdio,
    },
    (s) => o.stdout(`${s}\n`),
  )
  if (r.json) o.stdout(await json(docs, ctx))
  return 0
}

/** oclif's JSON rendering, loaded only for --json (the fast path leaves --json to oclif). */
async function json(doc: unknown, ctx: ServiceContext): Promise<string> {
  const {jsonDocument} = await import('./json-output.js')
  return jsonDocument(doc, ctx.config)
}
