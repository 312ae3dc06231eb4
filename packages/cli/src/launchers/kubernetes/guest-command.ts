/**
 * The argv sent through the exec API for one guest command. The exec API takes no environment,
 * working directory or deadline, so a small POSIX sh wrapper in the image does them:
 *
 *  - env: each NAME=VALUE is exported (names are checked here; values pass as arguments, never
 *    through the shell's parser);
 *  - the deadline, killing the whole tree: agent-init (`agent-init exec --timeout`) when the image
 *    carries it at /.agent/agent-init; otherwise the documented fallback, the image's `timeout`
 *    (coreutils: it puts itself and the command in a new process group and signals the group,
 *    TERM then KILL 2 s later; busybox's signals the command only). No timeout program and a
 *    deadline asked for: exit 125 with a message, never a command run without its deadline.
 *  - its pid, in /tmp/.agent-exec/<tag>, so that Ctrl-C can kill the tree with a second exec
 *    (closing an exec's WebSocket does not end its process on a real cluster).
 */
import {usageError} from '../../errors.js'
import {GUEST_INIT} from './pod-spec.js'

/** Exit code of the wrapper when the image has no way to enforce a deadline. */
export const NO_TIMEOUT_PROGRAM = 125
export const PID_DIR = '/tmp/.agent-exec'

const SCRIPT = [
  'n=$1; shift',
  'while [ "$n" -gt 0 ]; do export "$1" || exit 126; shift; n=$((n-1)); done',
  't=$1; d=$2; tag=$3; shift 3',
  'if [ -n "$d" ]; then cd -- "$d" || exit 126; fi',
  `mkdir -p ${PID_DIR} 2>/dev/null && echo $$ > ${PID_DIR}/"$tag" 2>/dev/null`,
  `if [ -x ${GUEST_INIT} ]; then if [ "$t" = 0 ]; then exec ${GUEST_INIT} exec --tag "$tag" -- "$@"; fi; exec ${GUEST_INIT} exec --timeout "$t" --tag "$tag" -- "$@"; fi`,
  'if [ "$t" = 0 ]; then exec "$@"; fi',
  'if command -v timeout >/dev/null 2>&1; then exec timeout -k 2 "$t" "$@"; fi',
  `echo "agent: this image has no timeout program (coreutils or busybox) and no agent-init, so --timeout cannot be enforced; run with --timeout 0 or add coreutils" >&2; exit ${NO_TIMEOUT_PROGRAM}`,
].join('\n')

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

export interface GuestCommand {
  argv: readonly string[]
  env: Readonly<Record<string, string>>
  workdir?: string
  timeoutSec: number
  tag: string
}

export function guestArgv(g: GuestCommand): string[] {
  const pairs: string[] = []
  for (const [k, v] of Object.entries(g.env)) {
    if (!ENV_NAME.test(k)) throw usageError(`environment variable name ${JSON.stringify(k)} is not a valid name (letters, digits, _)`)
    if (v.includes('\0')) throw usageError(`the value of ${k} must not contain NUL bytes`)
    pairs.push(`${k}=${v}`)
  }
  if (!/^[0-9a-f]{8,32}$/.test(g.tag)) throw new Error(`bad exec tag ${g.tag}`)
  const t = g.timeoutSec > 0 ? String(Math.max(1, Math.ceil(g.timeoutSec))) : '0'
  return ['/bin/sh', '-c', SCRIPT, 'agent-exec', String(pairs.length), ...pairs, t, g.workdir ?? '', g.tag, ...g.argv]
}

/**
 * For the v4 exec protocol, which cannot close stdin alone: stdin arrives framed (`LEN\n` then LEN
 * bytes, `0\n` at its end; exec.ts frames it) and a feeder turns that into a plain stdin with a
 * real end for the command, through a FIFO. The feeder reads each frame with `read` (one byte at
 * a time on a pipe) and `head -c LEN` (which reads no further than LEN), so no byte is lost;
 * when the command ends first, the feeder is killed and the wrapper ends with the command's code.
 * The feeder's stderr is /dev/null, so nothing of it holds the exec's output open.
 */
const FEEDER = [
  'd=$(mktemp -d 2>/dev/null) || d=/tmp/.agent-stdin.$$; mkdir -p "$d" && mkfifo "$d/in" || { echo "agent: cannot make a FIFO for stdin" >&2; exit 125; }',
  'exec 3<&0',
  '( while IFS= read -r n <&3 && [ "$n" -gt 0 ] 2>/dev/null; do head -c "$n" <&3 || break; done ) > "$d/in" 2>/dev/null &',
  'f=$!',
  '"$@" < "$d/in"; rc=$?',
  'kill "$f" 2>/dev/null; rm -rf "$d"; exit "$rc"',
].join('\n')

/** argv with its stdin taken from framed input (see FEEDER). */
export function framedStdinArgv(argv: readonly string[]): string[] {
  return ['/bin/sh', '-c', FEEDER, 'agent-stdin', ...argv]
}

/** One frame of stdin for framedStdinArgv; an empty chunk is the end. */
export function stdinFrame(chunk: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${chunk.length}\n`), chunk])
}

/** The command that kills an exec's tree by its tag (Ctrl-C, or our own deadline passed). */
export function killArgv(tag: string): string[] {
  if (!/^[0-9a-f]{8,32}$/.test(tag)) throw new Error(`bad exec tag ${tag}`)
  return [
    '/bin/sh',
    '-c',
    `if [ -x ${GUEST_INIT} ]; then ${GUEST_INIT} kill --tag "$0"; fi; p=$(cat ${PID_DIR}/"$0" 2>/dev/null) || exit 0; case "$p" in ''|*[!0-9]*) exit 0;; esac; kill -KILL "-$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; rm -f ${PID_DIR}/"$0"; exit 0`,
    tag,
  ]
}
