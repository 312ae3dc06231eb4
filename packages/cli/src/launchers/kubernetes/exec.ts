/**
 * One command in a pod through the Kubernetes exec API: a WebSocket to pods/{name}/exec,
 * subprotocol v5.channel.k8s.io preferred (it can close stdin alone: channel 255), v4 as the
 * fallback. Frames: first byte the channel (0 stdin, 1 stdout, 2 stderr, 3 status, 255 close).
 * The exit code comes from the status channel's V1Status (Success, or NonZeroExitCode with an
 * ExitCode cause). Everything the server sends is bounded and parsed, never trusted further.
 *
 * The WebSocket is opened by client-node's WebSocketHandler (it applies the kubeconfig's
 * credentials and TLS); the framing of stdin and the status are ours, so that stdin's end is a
 * close frame on v5 and the status is read whole.
 */
import {PassThrough, type Readable} from 'node:stream'
// Not re-exported by the package index (1.4.x); the package has no exports map, so the path is public.
import {WebSocketHandler} from '@kubernetes/client-node/dist/web-socket-handler.js'
import {AgentError, errorMessage, unavailable} from '../../errors.js'
import type {Cluster} from './client.js'
import {stdinFrame} from './guest-command.js'
import {CONTAINER} from './pod-spec.js'

export const STDIN = 0
export const STDOUT = 1
export const STDERR = 2
export const STATUS = 3
export const CLOSE = 255
const MAX_STATUS = 64 * 1024
/** Stop reading stdin while this much is queued on the socket. */
const HIGH_WATER = 4 * 1024 * 1024
const CHUNK = 64 * 1024

export interface PodExecIo {
  /** Bytes to send (closed after them), a stream, or nothing (no stdin at all). */
  stdin?: Buffer | Readable
  onStdout(b: Buffer): void
  onStderr(b: Buffer): void
  /** Ends the exec from our side (Ctrl-C, our deadline): the socket is closed. */
  signal?: AbortSignal
  /** The command reads framed stdin (guest-command.ts framedStdinArgv): send each chunk framed, and an empty frame at the end. */
  framed?: boolean
}

export interface PodExecResult {
  /** null: the connection ended with no status (we closed it, or it broke). */
  exitCode: number | null
  protocol: string
  /** Why there is no exit code, when there is none. */
  lost?: string
}

export function execPath(namespace: string, pod: string, argv: readonly string[], stdin: boolean): string {
  const q = new URLSearchParams()
  q.set('container', CONTAINER)
  for (const a of argv) q.append('command', a)
  q.set('stdin', String(stdin))
  q.set('stdout', 'true')
  q.set('stderr', 'true')
  q.set('tty', 'false')
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/exec?${q.toString()}`
}

/** The exit code a status-channel message says; throws for a failure that is not the command's own exit. */
export function exitFromStatus(raw: Buffer, pod: string): number {
  let st: {status?: unknown; reason?: unknown; message?: unknown; details?: {causes?: Array<{reason?: unknown; message?: unknown}>}}
  try {
    st = JSON.parse(raw.toString('utf8'))
  } catch {
    throw new AgentError('guest', `the exec in pod ${pod} ended with a status that is not JSON`)
  }
  if (!st || typeof st !== 'object') throw new AgentError('guest', `the exec in pod ${pod} ended with a malformed status`)
  if (st.status === 'Success') return 0
  if (st.reason === 'NonZeroExitCode') {
    const cause = Array.isArray(st.details?.causes) ? st.details!.causes!.find((c) => c && c.reason === 'ExitCode') : undefined
    const text = typeof cause?.message === 'string' ? cause.message : ''
    if (/^\d{1,3}$/.test(text) && Number(text) <= 255) return Number(text)
    throw new AgentError('guest', `the exec in pod ${pod} failed with no readable exit code (${JSON.stringify(text.slice(0, 40))})`)
  }
  const msg = typeof st.message === 'string' ? st.message.slice(0, 500) : 'no message'
  throw unavailable(`the exec in pod ${pod} failed: ${msg}`, 'is the pod running? `agent vm list` reconciles; `kubectl describe pod` says more')
}

/** Runs argv in the pod's sandbox container. Resolves when the server closes the exec. */
export async function podExec(c: Cluster, pod: string, argv: readonly string[], io: PodExecIo): Promise<PodExecResult> {
  // Its own dummy streams: the handler's defaults are process.stdout/stderr, which a close frame from the server would end.
  const handler = new WebSocketHandler(c.kc, undefined, {stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough()})
  const status: Buffer[] = []
  let statusBytes = 0
  let overflow = false
  const onFrame = (channel: number, data: Buffer): boolean => {
    if (channel === STDOUT) io.onStdout(data)
    else if (channel === STDERR) io.onStderr(data)
    else if (channel === STATUS) {
      statusBytes += data.length
      if (statusBytes > MAX_STATUS) overflow = true
      else status.push(Buffer.from(data))
    }
    // Anything else (close frames of the server's own streams, unknown channels) is ignored.
    return true
  }
  let ws: Awaited<ReturnType<typeof handler.connect>>
  try {
    ws = await handler.connect(execPath(c.namespace, pod, argv, io.stdin !== undefined), null, onFrame)
  } catch (err) {
    const why = describeWsError(err)
    throw unavailable(
      `cannot open an exec in pod ${pod} at ${c.server}: ${why}`,
      /HTTP 404/.test(why) ? '`agent vm list` reconciles the VM with the cluster; start or clean it' : 'the launcher needs create and get on pods/exec (docs/scale-out.md); is the pod running?',
    )
  }
  const protocol = ws.protocol || 'channel.k8s.io'
  const v5 = protocol === 'v5.channel.k8s.io'
  c.protocol = protocol
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()))
  let ours: string | undefined
  const end = (why: string) => {
    ours ??= why
    try {
      ws.close()
    } catch {
      ws.terminate()
    }
  }
  const onAbort = () => end(String(io.signal?.reason instanceof Error ? io.signal.reason.message : io.signal?.reason ?? 'aborted'))
  if (io.signal?.aborted) onAbort()
  io.signal?.addEventListener('abort', onAbort)
  const frame = (channel: number, b: Buffer) => Buffer.concat([Buffer.from([channel]), b])
  const closeStdin = () => {
    if (ws.readyState !== ws.OPEN) return
    // v4 has no way to close stdin alone: callers that need its end on v4 frame it, or bound their input (head -c).
    if (io.framed) ws.send(frame(STDIN, stdinFrame(Buffer.alloc(0))))
    if (v5) ws.send(Buffer.from([CLOSE, STDIN]))
  }
  if (Buffer.isBuffer(io.stdin)) {
    for (let i = 0; i < io.stdin.length; i += CHUNK) {
      const b = io.stdin.subarray(i, i + CHUNK)
      ws.send(frame(STDIN, io.framed ? stdinFrame(b) : b))
    }
    closeStdin()
  } else if (io.stdin) {
    const input = io.stdin
    const onData = (d: Buffer | string) => {
      if (ws.readyState !== ws.OPEN) return
      const b = Buffer.isBuffer(d) ? d : Buffer.from(d)
      if (!b.length) return
      ws.send(frame(STDIN, io.framed ? stdinFrame(b) : b))
      if (ws.bufferedAmount > HIGH_WATER) {
        input.pause()
        const t = setInterval(() => {
          if (ws.bufferedAmount <= HIGH_WATER / 2 || ws.readyState !== ws.OPEN) {
            clearInterval(t)
            input.resume()
          }
        }, 20)
      }
    }
    // Unframed on v4 (the server spoke v5 before, and no longer does): the end cannot be said, so
    // the exec is closed rather than left waiting for it; the caller finds no exit status.
    const onEnd = () => (v5 || io.framed ? closeStdin() : end('the API server speaks only v4.channel.k8s.io, which cannot close stdin alone'))
    input.on('data', onData)
    input.once('end', onEnd)
    void closed.then(() => {
      input.off('data', onData)
      input.off('end', onEnd)
      input.pause()
    })
  }
  await closed
  io.signal?.removeEventListener('abort', onAbort)
  if (overflow) throw new AgentError('guest', `the exec in pod ${pod} sent a status larger than ${MAX_STATUS} bytes`)
  if (status.length) return {exitCode: exitFromStatus(Buffer.concat(status), pod), protocol}
  return {exitCode: null, protocol, lost: ours ?? 'the exec connection closed without an exit status'}
}

/** The words of a failed WebSocket open: an Error, or the ErrorEvent ws hands to onerror. */
export function describeWsError(err: unknown): string {
  const e = err as {message?: unknown; error?: {message?: unknown}}
  const text = String((typeof e?.error?.message === 'string' && e.error.message) || (typeof e?.message === 'string' && e.message) || (typeof err === 'string' && err) || 'the WebSocket could not be opened').slice(0, 300)
  // ws reports a refused upgrade as "Unexpected server response: 403".
  const m = /Unexpected server response: (\d+)/.exec(text)
  if (!m) return text
  const why: Record<string, string> = {'401': ' (Unauthorized)', '403': ' (Forbidden)', '404': ' (no such pod: is the VM still running?)'}
  return `the API server answered HTTP ${m[1]}${why[m[1]!] ?? ''}`
}
