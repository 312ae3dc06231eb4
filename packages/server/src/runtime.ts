/** The server's live state for one sandbox: its processes, filesystem helper and interpreter contexts. */
import type {ServiceContext} from './floor.js'
import {GuestFs} from './guest-fs.js'
import {Interpreter} from './interpreter.js'
import {ProcessTable} from './processes.js'
import type {Sandbox, SandboxMeta, Sandboxes} from './sandboxes.js'

export class SandboxRuntime {
  readonly processes: ProcessTable
  readonly fs: GuestFs
  readonly interpreter: Interpreter

  constructor(
    ctx: ServiceContext,
    private sb: Sandbox,
  ) {
    this.processes = new ProcessTable(ctx, sb.vm)
    this.fs = new GuestFs(ctx, sb.vm)
    this.interpreter = new Interpreter(ctx, sb.vm, () => this.sb.meta.envVars)
  }

  get id(): string {
    return this.sb.vm.id
  }

  meta(): SandboxMeta {
    return this.sb.meta
  }

  refresh(sb: Sandbox): void {
    this.sb = sb
  }

  close(): void {
    this.processes.killAll()
    this.interpreter.close()
  }
}

/** Runtimes by sandbox id, made on first use and dropped when the sandbox goes away. */
export class Runtimes {
  private readonly byId = new Map<string, SandboxRuntime>()

  constructor(
    private readonly ctx: ServiceContext,
    private readonly sandboxes: Sandboxes,
  ) {
    sandboxes.onGone = (id) => this.drop(id)
  }

  /** The runtime of a running sandbox (404 unknown, 502 not running). */
  async get(id: string): Promise<SandboxRuntime> {
    const sb = await this.sandboxes.running(id)
    await this.sandboxes.prepareOnce(sb)
    let rt = this.byId.get(id)
    if (!rt) {
      rt = new SandboxRuntime(this.ctx, sb)
      this.byId.set(id, rt)
    } else rt.refresh(sb)
    return rt
  }

  drop(id: string): void {
    this.byId.get(id)?.close()
    this.byId.delete(id)
  }

  closeAll(): void {
    for (const id of [...this.byId.keys()]) this.drop(id)
  }
}
