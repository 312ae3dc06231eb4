/**
 * The code interpreter (sandbox port 49999): one long-lived Python process per context, inside
 * the VM (an exec through the VM service that the server keeps open), with no Jupyter. Cells go
 * to it as JSON lines on stdin; it answers with the NDJSON messages of E2B's /execute on a
 * private copy of its stdout. Anything the cell writes to file descriptors 1 and 2 directly
 * (a subprocess, say) arrives on the exec's stderr and is passed on as the cell's stderr.
 */
import {randomUUID} from 'node:crypto'
import {PassThrough} from 'node:stream'
import {errorMessage, logger, type ServiceContext, type VmRecord} from './floor.js'
import {DEFAULT_HOME, DEFAULT_USER, MAX_EXEC_SEC, argvCommand, runInGuest} from './guest.js'
import {HttpError} from './http-errors.js'

const DRIVER = String.raw`
import ast, json, linecache, os, sys, traceback
proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
os.dup2(2, 1)
cur = {"id": None}
def send(obj):
    obj["id"] = cur["id"]
    proto.write(json.dumps(obj) + "\n")
    proto.flush()
class Stream:
    # Whole lines, as Jupyter sends them: print("a") is one "a\n" message, not two.
    def __init__(self, name): self.name, self.buf = name, ""
    def write(self, s):
        s = str(s)
        self.buf += s
        nl = self.buf.rfind("\n")
        if nl >= 0:
            send({"type": self.name, "text": self.buf[:nl + 1]})
            self.buf = self.buf[nl + 1:]
        return len(s)
    def flush(self):
        if self.buf:
            send({"type": self.name, "text": self.buf})
            self.buf = ""
    def isatty(self): return False
    def fileno(self): return 1 if self.name == "stdout" else 2
    @property
    def encoding(self): return "utf-8"
sys.stdout = Stream("stdout")
sys.stderr = Stream("stderr")
ns = {"__name__": "__main__", "__builtins__": __builtins__}
count = 0
for line in sys.stdin:
    req = json.loads(line)
    cur["id"] = req["id"]
    saved = dict(os.environ)
    os.environ.update(req.get("env") or {})
    count += 1
    try:
        name = "<cell-%d>" % count
        src = req["code"]
        # Tracebacks show the cell's lines, as in a notebook.
        linecache.cache[name] = (len(src), None, src.splitlines(True), name)
        tree = ast.parse(src, name, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, name, "exec"), ns)
        if last is not None:
            value = eval(compile(last, name, "eval"), ns)
            if value is not None:
                ns["_"] = value
                send({"type": "result", "text": repr(value), "is_main_result": True})
    except BaseException as e:
        # Drop this driver's own frame: the traceback starts in the cell.
        t = e.__traceback__.tb_next if e.__traceback__ and e.__traceback__.tb_frame.f_code.co_filename == "<string>" else e.__traceback__
        tb = "".join(traceback.format_exception(type(e), e, t))
        send({"type": "error", "name": type(e).__name__, "value": str(e), "traceback": tb})
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.environ.clear()
        os.environ.update(saved)
    send({"type": "number_of_executions", "execution_count": count})
    send({"type": "__done__"})
`

export type Message = Record<string, unknown> & {type: string}

interface Pending {
  id: number
  onMessage: (m: Message) => void
  done: () => void
}

/** One context: a Python process and the cells queued for it. */
class PyContext {
  private stdin?: PassThrough
  private alive = false
  private pending?: Pending
  private nextId = 1
  private queue: Promise<void> = Promise.resolve()
  private lineBuf = ''
  private stopper?: AbortController

  constructor(
    readonly id: string,
    readonly language: string,
    readonly cwd: string,
    private readonly ctx: ServiceContext,
    private readonly vm: VmRecord,
    private readonly env: () => Record<string, string>,
  ) {}

  private spawn(): void {
    this.stdin = new PassThrough()
    this.stopper = new AbortController()
    this.alive = true
    this.lineBuf = ''
    const stopper = this.stopper
    runInGuest(this.ctx, this.vm, {
      cmd: argvCommand(['python3', '-u', '-c', DRIVER]),
      env: {HOME: DEFAULT_HOME, USER: DEFAULT_USER, PYTHONUNBUFFERED: '1', ...this.env()},
      cwd: this.cwd,
      stdin: this.stdin,
      timeoutSec: MAX_EXEC_SEC,
      signal: stopper.signal,
      maxCaptureBytes: 64 * 1024,
      onOutput: (stream, chunk) => (stream === 'stdout' ? this.onProto(chunk) : this.pending?.onMessage({type: 'stderr', text: chunk.toString('utf8')})),
    })
      .then((r) => {
        if (!stopper.signal.aborted && r.exitCode !== 0) logger().debug(`${this.vm.id}: interpreter context ${this.id} exited ${r.exitCode}: ${r.stderr.slice(-500)}`)
      })
      .catch((err) => logger().debug(`${this.vm.id}: interpreter context ${this.id}: ${errorMessage(err)}`))
      .finally(() => {
        if (this.stopper !== stopper) return // restarted: the new process owns the context now
        this.alive = false
        const p = this.pending
        if (p) {
          this.pending = undefined
          p.onMessage({type: 'error', name: 'InterpreterExited', value: 'the Python process of this context exited; its state is lost', traceback: ''})
          p.done()
        }
      })
  }

  private onProto(chunk: Buffer): void {
    this.lineBuf += chunk.toString('utf8')
    let nl: number
    while ((nl = this.lineBuf.indexOf('\n')) >= 0) {
      const line = this.lineBuf.slice(0, nl)
      this.lineBuf = this.lineBuf.slice(nl + 1)
      if (!line.trim()) continue
      let msg: Message & {id?: number}
      try {
        msg = JSON.parse(line)
      } catch {
        continue
      }
      const p = this.pending
      if (!p || msg.id !== p.id) continue
      delete msg.id
      if (msg.type === '__done__') {
        this.pending = undefined
        p.done()
      } else p.onMessage(msg)
    }
  }

  /** Runs one cell after the ones before it; resolves when it has finished. */
  run(code: string, env: Record<string, string>, onMessage: (m: Message) => void): Promise<void> {
    const next = this.queue.then(
      () =>
        new Promise<void>((done) => {
          if (!this.alive) this.spawn()
          const id = this.nextId++
          this.pending = {id, onMessage, done}
          this.stdin!.write(JSON.stringify({id, code, env}) + '\n')
        }),
    )
    this.queue = next.catch(() => undefined)
    return next
  }

  stop(): void {
    this.stopper?.abort()
    this.stdin?.end()
    this.alive = false
  }

  restart(): void {
    this.stop()
  }

  view() {
    return {id: this.id, language: this.language, cwd: this.cwd}
  }
}

export class Interpreter {
  private readonly contexts = new Map<string, PyContext>()
  private defaultContext?: PyContext

  constructor(
    private readonly ctx: ServiceContext,
    private readonly vm: VmRecord,
    private readonly env: () => Record<string, string>,
  ) {}

  create(language: unknown, cwd: unknown): PyContext {
    const lang = language === undefined || language === null || language === '' ? 'python' : language
    if (lang !== 'python') throw new HttpError(400, `language "${String(lang)}" is not supported by the agent interpreter (only python)`)
    if (cwd !== undefined && cwd !== null && (typeof cwd !== 'string' || !cwd.startsWith('/'))) throw new HttpError(400, 'cwd must be an absolute path')
    const c = new PyContext(randomUUID(), 'python', (cwd as string | undefined) ?? DEFAULT_HOME, this.ctx, this.vm, this.env)
    this.contexts.set(c.id, c)
    return c
  }

  get(id: string): PyContext {
    const c = this.contexts.get(id)
    if (!c) throw new HttpError(404, `context ${id} not found`)
    return c
  }

  list() {
    return [...this.contexts.values()].map((c) => c.view())
  }

  remove(id: string): void {
    this.get(id).stop()
    this.contexts.delete(id)
  }

  /** The context a cell runs in: the one named, else the sandbox's default Python context. */
  contextFor(id: unknown, language: unknown): PyContext {
    if (typeof id === 'string' && id) return this.get(id)
    if (language !== undefined && language !== null && language !== 'python') throw new HttpError(400, `language "${String(language)}" is not supported by the agent interpreter (only python)`)
    this.defaultContext ??= this.create('python', undefined)
    return this.defaultContext
  }

  close(): void {
    for (const c of this.contexts.values()) c.stop()
    this.contexts.clear()
    this.defaultContext = undefined
  }
}
