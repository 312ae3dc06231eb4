import {randomBytes} from 'node:crypto'
import {
  accessSync,
  constants,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import {arch as osArch, constants as osConstants, homedir, tmpdir} from 'node:os'
import {delimiter, isAbsolute, join} from 'node:path'
import {execa} from 'execa'
import type {StatePaths} from '../config/state-dir.js'
import {AgentError, conflict, errorMessage, unavailable, usageError} from '../errors.js'
import {imageStore} from '../images/storage.js'
import {logger} from '../logging/logger.js'
import type {VmRecord} from '../state/vm-record.js'
import type {Availability, ExecRequest, ExecResult, LaunchContext, Launcher, LauncherRefs, RuntimeState} from './launcher.js'
import {CappedOutput} from './capped-output.js'

/**
 * krunvm launcher: each VM is a krunvm microVM (libkrun, KVM on Linux, Hypervisor.framework on macOS).
 *
 * krunvm has no long-running VM: `krunvm start NAME CMD` boots the VM, runs one command and exits with
 * its code. So `create` only defines the VM (`krunvm create`), every `exec` is one `krunvm start`,
 * `stop` only kills an in-flight command, and "running" means "defined and not stopped by agent".
 *
 * Environment:
 *   AGENT_KRUNVM=<path>                  the krunvm binary (default: `krunvm` on PATH)
 *   AGENT_ENABLE_GUEST_VOLUMES=1|0|true|false
 *                                        mount /in, /out, /persist (default: on, except on macOS)
 *   AGENT_KRUNVM_ASSUME_HYPERVISOR=1     TEST-ONLY: skip the /dev/kvm / macOS check in available(),
 *                                        so contract tests can drive the krunvm stand-in
 */

/** Guest paths are single top-level dirs: krunvm refuses nested guest paths. */
export const GUEST_IN = '/in'
export const GUEST_OUT = '/out'
export const GUEST_PERSIST = '/persist'

/** Without volumes, a command travels on the guest kernel command line (about 2 KiB on aarch64). */
export const INLINE_LIMIT_BYTES = 2000

const INSTALL = 'install krunvm (macOS: scripts/macos/setup.sh, or `brew tap slp/krun && brew install krunvm`; Linux: build containers/krunvm with libkrun)'
const INSTALL_FIX = `${INSTALL}, or use --runtime gvisor`
const KVM_STEP = 'enable KVM (load kvm_intel/kvm_amd, or enable nested virtualisation for this VM)'
const VOLUMES_HINT = 'set AGENT_ENABLE_GUEST_VOLUMES=1 and create the VM again, or pass the code with --cmd'
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
const TAIL_BYTES = 8192

export interface KrunvmLauncherOptions {
  /** Environment read for AGENT_* switches and handed to krunvm (default: process.env, read on each call). */
  env?: NodeJS.ProcessEnv
  platform?: NodeJS.Platform
  /** Time between SIGTERM and SIGKILL when a command is killed (timeout, Ctrl-C, stop). */
  killGraceMs?: number
  /** Timeout for krunvm create/delete/list (create may pull an image). */
  adminTimeoutMs?: number
}

/** The krunvm name of an agent VM. */
export function krunvmName(id: string): string {
  return `agent-${id}`
}

/** Quotes a word for POSIX sh: the result is always one literal word. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}

export interface CreateArgvOptions {
  image: string
  name: string
  cpus: number
  memMib: number
  /** [hostDir, guestDir] pairs. */
  volumes?: ReadonlyArray<readonly [string, string]>
  /** [hostPort, guestPort] pairs (long form `--port` only: krunvm has no `-p`). */
  ports?: ReadonlyArray<readonly [number, number]>
}

/** `krunvm create IMAGE --name N --cpus C --mem M [--volume H:G]... [--port H:G]...`, validated as krunvm would. */
export function createArgv(o: CreateArgvOptions): string[] {
  if (!o.image || o.image.startsWith('-')) throw usageError(`image reference ${JSON.stringify(o.image)} cannot be passed to krunvm`)
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(o.name)) throw usageError(`invalid krunvm VM name ${JSON.stringify(o.name)}`)
  // krunvm takes whole vCPUs and MiB as u32; agent allows fractional CPUs.
  const cpus = Math.max(1, Math.ceil(o.cpus))
  const mem = Math.max(1, Math.ceil(o.memMib))
  const args = ['create', o.image, '--name', o.name, '--cpus', String(cpus), '--mem', String(mem)]
  for (const [host, guest] of o.volumes ?? []) {
    if (!isAbsolute(host)) throw new AgentError('internal', `krunvm volume host path must be absolute: ${host}`)
    if (host.includes(':'))
      throw unavailable(`krunvm cannot mount ${host}: its --volume HOST:GUEST syntax does not allow ':' in paths`, 'use a state dir (AGENT_STATE_DIR) whose path has no ":"')
    if (!/^\/[^/:]+$/.test(guest)) throw new AgentError('internal', `krunvm guest path must be a single top-level dir, got ${guest}`)
    args.push('--volume', `${host}:${guest}`)
  }
  for (const [h, g] of o.ports ?? []) {
    for (const p of [h, g]) if (!Number.isInteger(p) || p < 0 || p > 65_535) throw usageError(`invalid port ${p}: must be 0-65535`)
    args.push('--port', `${h}:${g}`)
  }
  return args
}

/** `krunvm start [--env K=V]... NAME CMD -- ARGS...`: the `--` keeps `-`-leading guest args away from clap. */
export function startArgv(name: string, guestArgv: readonly string[], env: readonly string[] = []): string[] {
  if (guestArgv.length === 0) throw usageError('nothing to run')
  const [cmd, ...rest] = guestArgv
  if (cmd.startsWith('-')) throw usageError(`the command to run cannot start with '-': ${JSON.stringify(cmd)}`)
  const envArgs = env.flatMap((e) => {
    if (!ENV_NAME.test(e.slice(0, e.indexOf('=')))) throw usageError(`invalid environment entry ${JSON.stringify(e)}`)
    return ['--env', e]
  })
  return ['start', ...envArgs, name, cmd, '--', ...rest]
}

export interface ScriptOptions {
  argv: readonly string[]
  env?: Readonly<Record<string, string>>
  workdir?: string
  /** Guest path of a file the script creates first, proving the guest command started. */
  marker?: string
  /**
   * For `sh -c SCRIPT` on the guest kernel command line: one line, and no byte that the kernel
   * command line cannot carry (`"`, control characters, non-ASCII). Words holding such bytes are
   * rebuilt in the guest with printf octal escapes into variables, expanded with IFS empty and
   * globbing off, so every word still arrives exactly as given.
   */
  inline?: boolean
}

/** Characters that cannot travel on the kernel command line (each word is quoted, unescaped). */
const CMDLINE_UNSAFE = /["\x00-\x1f\x7f-\uffff]/
/** Characters that printf or single quotes would misread. */
const PRINTF_UNSAFE = /["\\%'\x00-\x1f\x7f-\uffff]/

/** A printf format that prints exactly `s` (octal escapes for everything but plain ASCII). */
export function printfFormat(s: string): string {
  let out = ''
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b)
    out += b >= 0x20 && b < 0x7f && !PRINTF_UNSAFE.test(c) ? c : `\\${b.toString(8).padStart(3, '0')}`
  }
  return out
}

/** The sh script that runs a command in the guest: env exports, cd, then `exec` of the argv. */
export function guestScript(o: ScriptOptions): string {
  if (o.argv.length === 0) throw usageError('nothing to run')
  const lines: string[] = []
  if (!o.inline) lines.push('# written by agent; run by /bin/sh in a krunvm guest')
  if (o.marker) lines.push(`: > ${shQuote(o.marker)}`)
  let vars = 0
  const prelude: string[] = []
  // A word as sh source: single-quoted, or (inline, unsafe bytes) a variable built by printf.
  const word = (s: string, name?: string): {src: string; assign?: string} => {
    if (!o.inline || !CMDLINE_UNSAFE.test(s)) return {src: shQuote(s)}
    const v = name ?? `_a${++vars}`
    // `x` keeps trailing newlines from $(...); assignments are neither split nor globbed.
    return {src: `$${v}`, assign: `${v}=$(printf '${printfFormat(s)}x'); ${v}=\${${v}%x}`}
  }
  for (const [k, v] of Object.entries(o.env ?? {})) {
    if (!ENV_NAME.test(k)) throw usageError(`invalid environment variable name ${JSON.stringify(k)}`)
    if (v.includes('\0')) throw usageError(`environment variable ${k} contains a NUL byte`)
    const w = word(v, k)
    lines.push(w.assign ? `${w.assign}; export ${k}` : `export ${k}=${w.src}`)
  }
  if (o.workdir) {
    const w = word(o.workdir)
    if (w.assign) lines.push(w.assign)
    lines.push(`cd ${w.src} || exit 1`)
  }
  for (const a of o.argv) if (a.includes('\0')) throw usageError('command arguments must not contain NUL bytes')
  const words = o.argv.map((a) => word(a))
  for (const w of words) if (w.assign) lines.push(w.assign)
  lines.push(`exec ${words.map((w) => w.src).join(' ')}`)
  // Unquoted $vars must expand to exactly one word each: no field splitting, no globbing.
  if (o.inline && vars > 0) prelude.push('IFS=', 'set -f')
  return o.inline ? [...prelude, ...lines].join('; ') : `${lines.join('\n')}\n`
}

/** Names of the VMs in a krunvm TOML (`[vmconfig_map.NAME]` tables) with their mapped volumes. */
export function parseKrunvmToml(text: string): Map<string, {mappedVolumes: Record<string, string>; container?: string}> {
  const vms = new Map<string, {mappedVolumes: Record<string, string>; container?: string}>()
  let current: {vm: string; sub?: string} | undefined
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line || line.startsWith('#')) continue
    if (line.startsWith('[')) {
      const keys = tomlKeys(line.slice(line.startsWith('[[') ? 2 : 1, line.lastIndexOf(']')).replace(/\]$/, ''))
      current = undefined
      if (keys[0] === 'vmconfig_map' && keys.length >= 2) {
        if (!vms.has(keys[1])) vms.set(keys[1], {mappedVolumes: {}})
        current = {vm: keys[1], sub: keys[2]}
      }
      continue
    }
    if (!current) continue
    const eq = keyEnd(line)
    if (eq < 0) continue
    const key = tomlKeys(line.slice(0, eq))[0]
    const value = tomlString(line.slice(eq + 1).trim())
    const entry = vms.get(current.vm)!
    if (current.sub === 'mapped_volumes' && value !== undefined) entry.mappedVolumes[key] = value
    else if (current.sub === undefined && key === 'container' && value !== undefined) entry.container = value
  }
  return vms
}

function keyEnd(line: string): number {
  let i = 0
  let quote: string | undefined
  for (; i < line.length; i++) {
    const c = line[i]
    if (quote) {
      if (c === '\\' && quote === '"') i++
      else if (c === quote) quote = undefined
    } else if (c === '"' || c === "'") quote = c
    else if (c === '=') return i
  }
  return -1
}

function tomlKeys(s: string): string[] {
  const keys: string[] = []
  let i = 0
  while (i < s.length) {
    while (i < s.length && (s[i] === ' ' || s[i] === '.' || s[i] === '\t')) i++
    if (i >= s.length) break
    if (s[i] === '"' || s[i] === "'") {
      const q = s[i]
      let j = i + 1
      while (j < s.length && s[j] !== q) j += s[j] === '\\' && q === '"' ? 2 : 1
      keys.push(tomlString(s.slice(i, j + 1)) ?? '')
      i = j + 1
    } else {
      let j = i
      while (j < s.length && /[A-Za-z0-9_-]/.test(s[j])) j++
      if (j === i) break
      keys.push(s.slice(i, j))
      i = j
    }
  }
  return keys
}

function tomlString(s: string): string | undefined {
  if (s.startsWith('"')) {
    const end = keyEndQuote(s)
    try {
      return JSON.parse(s.slice(0, end + 1)) as string
    } catch {
      return undefined
    }
  }
  if (s.startsWith("'")) return s.slice(1, s.indexOf("'", 1))
  return undefined
}

function keyEndQuote(s: string): number {
  for (let i = 1; i < s.length; i++) {
    if (s[i] === '\\') i++
    else if (s[i] === '"') return i
  }
  return s.length - 1
}

interface LockInfo {
  pid: number
  token: string
  krunvmPid?: number
  /** krunvm leads its own process group (killed as a group). */
  group?: boolean
  startedAt: string
}

function alive(pid: number | undefined): boolean {
  if (!pid || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function killProc(pid: number, group: boolean | undefined, sig: NodeJS.Signals): void {
  try {
    process.kill(group ? -pid : pid, sig)
  } catch {
    if (group) {
      try {
        process.kill(pid, sig)
      } catch {
        // gone
      }
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function lastLines(s: string, n = 3): string {
  return s.trim().split('\n').map((l) => l.trim()).filter(Boolean).slice(-n).join(' | ')
}

class Tail {
  private buf = Buffer.alloc(0)
  push(b: Buffer): void {
    this.buf = Buffer.concat([this.buf, b])
    if (this.buf.length > TAIL_BYTES) this.buf = this.buf.subarray(this.buf.length - TAIL_BYTES)
  }
  toString(): string {
    return this.buf.toString('utf8')
  }
}

export class KrunvmLauncher implements Launcher {
  readonly name = 'krunvm' as const
  private readonly opts: KrunvmLauncherOptions
  private versionCache = new Map<string, string | undefined>()

  constructor(opts: KrunvmLauncherOptions = {}) {
    this.opts = opts
  }

  private get env(): NodeJS.ProcessEnv {
    return this.opts.env ?? process.env
  }

  private get platform(): NodeJS.Platform {
    return this.opts.platform ?? process.platform
  }

  private get graceMs(): number {
    return this.opts.killGraceMs ?? 5000
  }

  /** Whether new VMs get /in, /out and /persist (AGENT_ENABLE_GUEST_VOLUMES; default off on macOS). */
  volumesEnabled(): boolean {
    const raw = (this.env.AGENT_ENABLE_GUEST_VOLUMES ?? '').trim().toLowerCase()
    if (raw === '') return this.platform !== 'darwin'
    if (raw === '1' || raw === 'true') return true
    if (raw === '0' || raw === 'false') return false
    throw usageError(`AGENT_ENABLE_GUEST_VOLUMES must be 1, 0, true or false (got ${JSON.stringify(this.env.AGENT_ENABLE_GUEST_VOLUMES)})`)
  }

  get supportsFiles(): boolean {
    try {
      return this.volumesEnabled()
    } catch {
      return false
    }
  }

  /** The krunvm binary: AGENT_KRUNVM, else `krunvm` on PATH. */
  binary(): string | undefined {
    const explicit = this.env.AGENT_KRUNVM
    if (explicit) return isExecutable(explicit) ? explicit : undefined
    for (const dir of (this.env.PATH ?? '').split(delimiter)) {
      if (!dir) continue
      const p = join(dir, 'krunvm')
      if (isExecutable(p)) return p
    }
    return undefined
  }

  private hypervisor(): {ok: boolean; reason?: string; fix?: string; note?: string} {
    if (this.env.AGENT_KRUNVM_ASSUME_HYPERVISOR === '1') return {ok: true, note: 'hypervisor check skipped (AGENT_KRUNVM_ASSUME_HYPERVISOR=1, test only)'}
    if (this.platform === 'darwin') {
      if (osArch() === 'arm64') return {ok: true}
      return {ok: false, reason: 'krunvm on macOS needs Apple silicon (Hypervisor.framework on arm64)', fix: 'use --runtime gvisor on a Linux host'}
    }
    if (this.platform !== 'linux') return {ok: false, reason: `krunvm does not run on ${this.platform}`, fix: 'use a Linux host with KVM, or macOS on Apple silicon'}
    if (!existsSync('/dev/kvm')) {
      return {
        ok: false,
        reason: '/dev/kvm does not exist (no KVM on this host)',
        fix: `${KVM_STEP}, or use --runtime gvisor`,
      }
    }
    try {
      accessSync('/dev/kvm', constants.R_OK | constants.W_OK)
    } catch {
      return {ok: false, reason: '/dev/kvm is not readable and writable by this user', fix: 'add the user to the kvm group (then log in again), or use --runtime gvisor'}
    }
    return {ok: true}
  }

  async available(): Promise<Availability> {
    const bin = this.binary()
    const hv = this.hypervisor()
    if (!bin) {
      const missing = this.env.AGENT_KRUNVM ? `AGENT_KRUNVM=${this.env.AGENT_KRUNVM} is not an executable file` : 'krunvm is not installed (not found on PATH)'
      // Say both when both are missing: installing krunvm alone would not help.
      if (!hv.ok) return {ok: false, reason: `${missing}, and ${hv.reason}`, fix: `${/\/dev\/kvm does not exist/.test(hv.reason ?? '') ? KVM_STEP : hv.fix} and ${INSTALL}, or use --runtime gvisor`}
      return {ok: false, reason: missing, fix: INSTALL_FIX}
    }
    const version = await this.version(bin)
    if (!hv.ok) return {ok: false, version, reason: hv.reason, fix: hv.fix}
    if (this.platform === 'linux' && process.getuid?.() !== 0 && this.env.BUILDAH_ISOLATION === undefined) {
      return {
        ok: false,
        version,
        reason: 'krunvm on Linux refuses to run as a non-root user outside `buildah unshare`',
        fix: 'run agent as root, or inside `buildah unshare`, or use --runtime gvisor',
      }
    }
    if (!this.onPath('buildah')) return {ok: false, version, reason: 'krunvm needs buildah on PATH, and it is not there', fix: 'install buildah (apt-get install buildah / brew install buildah)'}
    return {ok: true, version}
  }

  private onPath(cmd: string): boolean {
    return (this.env.PATH ?? '').split(delimiter).some((d) => d && isExecutable(join(d, cmd)))
  }

  private async version(bin: string): Promise<string | undefined> {
    if (this.versionCache.has(bin)) return this.versionCache.get(bin)
    let v: string | undefined
    try {
      // krunvm loads (and creates) its TOML before parsing argv: keep that away from the user's config.
      const xdg = mkdtempSync(join(tmpdir(), 'agent-krunvm-probe-'))
      try {
        const res = await execa(bin, ['--version'], {env: {...this.env, XDG_CONFIG_HOME: xdg}, reject: false, timeout: 10_000, stdin: 'ignore'})
        if (res.exitCode === 0) v = String(res.stdout).trim().split('\n')[0] || undefined
      } finally {
        rmSync(xdg, {recursive: true, force: true})
      }
    } catch {
      v = undefined
    }
    this.versionCache.set(bin, v)
    return v
  }

  private requireBinary(): string {
    const bin = this.binary()
    if (!bin) throw unavailable('krunvm is not installed (not found on PATH)', INSTALL_FIX)
    return bin
  }

  /** The environment of every krunvm call: its TOML under our state dir, buildah sharing agent's image storage. */
  private krunvmEnv(paths: StatePaths): Record<string, string | undefined> {
    mkdirSync(paths.krunvmConfigHome, {recursive: true, mode: 0o700})
    return {...this.env, XDG_CONFIG_HOME: paths.krunvmConfigHome, ...imageStore(paths.root, this.env).env}
  }

  /** krunvm's TOML files: $XDG_CONFIG_HOME/krunvm/krunvm.toml; on macOS krunvm may use ~/Library/Preferences. */
  private tomlFiles(paths: StatePaths): string[] {
    const files = [join(paths.krunvmConfigHome, 'krunvm', 'krunvm.toml')]
    if (this.platform === 'darwin') files.push(join(this.env.HOME ?? homedir(), 'Library', 'Preferences', 'rs.krunvm', 'krunvm.toml'))
    return files
  }

  /** The VMs krunvm knows, read from its TOML (no krunvm call, no KVM needed). */
  definedVms(paths: StatePaths): Map<string, {mappedVolumes: Record<string, string>; container?: string}> {
    const all = new Map<string, {mappedVolumes: Record<string, string>; container?: string}>()
    for (const f of this.tomlFiles(paths)) {
      let text: string
      try {
        text = readFileSync(f, 'utf8')
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue
        throw unavailable(`cannot read krunvm's state ${f}: ${errorMessage(err)}`)
      }
      for (const [k, v] of parseKrunvmToml(text)) if (!all.has(k)) all.set(k, v)
    }
    return all
  }

  /** Runs an administrative krunvm command (create, delete), throwing an AgentError on failure. */
  private async admin(paths: StatePaths, args: string[], what: string): Promise<{stdout: string; stderr: string}> {
    const bin = this.requireBinary()
    logger().debug(`krunvm ${args.join(' ')}`)
    const res = await execa(bin, args, {
      env: this.krunvmEnv(paths),
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      timeout: this.opts.adminTimeoutMs ?? 15 * 60_000,
    })
    const stdout = String(res.stdout ?? '')
    const stderr = String(res.stderr ?? '')
    if (res.exitCode === 0) return {stdout, stderr}
    if (res.timedOut) throw unavailable(`${what} timed out (krunvm ${args[0]})`)
    if (res.exitCode === undefined) throw unavailable(`cannot run krunvm (${bin}): ${res.shortMessage ?? res.message}`, INSTALL_FIX)
    throw krunvmFailure(what, res.exitCode, stdout, stderr)
  }

  async create(vm: VmRecord, ctx: LaunchContext): Promise<LauncherRefs> {
    // Refused before anything is touched: krunvm cannot turn networking off (libkrun TSI).
    if (vm.network === 'none') {
      throw usageError(
        "krunvm cannot run a VM without network: libkrun gives the guest the host's sockets (TSI) and krunvm has no switch to turn that off",
        'use `--network allow_all` with krunvm, or `--runtime gvisor` for a VM with no network',
      )
    }
    const volumes = this.volumesEnabled()
    const {paths} = ctx
    const name = krunvmName(vm.id)
    ctx.step?.('preparing krunvm directories')
    mkdirSync(paths.krunvmConfigHome, {recursive: true, mode: 0o700})
    mkdirSync(paths.vmDir(vm.id), {recursive: true, mode: 0o700})
    const mounts: Array<[string, string]> = []
    if (volumes) {
      // krunvm refuses a --volume whose host dir does not exist yet.
      mounts.push([paths.inDir(vm.id), GUEST_IN], [paths.outDir(vm.id), GUEST_OUT])
      if (vm.persist) mounts.push([ctx.persistDir ?? paths.persistDir(vm.id), GUEST_PERSIST])
      for (const [host] of mounts) mkdirSync(host, {recursive: true, mode: 0o700})
      this.agentDir(paths, vm.id)
    }
    const argv = createArgv({image: vm.image, name, cpus: vm.cpus, memMib: vm.memoryMib, volumes: mounts})
    if (this.definedVms(paths).has(name)) {
      // A half-made VM from an earlier attempt with the same id: make it again from scratch.
      ctx.step?.('deleting a stale krunvm VM')
      await this.admin(paths, ['delete', name], `deleting stale krunvm VM ${name}`)
    }
    ctx.step?.('creating the krunvm VM')
    await this.admin(paths, argv, `krunvm create ${name}`)
    rmSync(this.stoppedMarker(paths, vm.id), {force: true})
    return {containerRef: name, rootfsRef: null, bundleRef: null}
  }

  async start(vm: VmRecord, ctx: LaunchContext): Promise<void> {
    const name = krunvmName(vm.id)
    const def = this.definedVms(ctx.paths).get(name)
    if (!def) {
      throw new AgentError('not_found', `krunvm has no VM ${name} (its definition is gone from ${this.tomlFiles(ctx.paths)[0]})`, {
        hint: `clean it with \`agent vm clean ${vm.id}\``,
      })
    }
    // Volume dirs must exist when krunvm boots the VM.
    for (const host of Object.keys(def.mappedVolumes)) mkdirSync(host, {recursive: true, mode: 0o700})
    rmSync(this.stoppedMarker(ctx.paths, vm.id), {force: true})
  }

  async stop(vm: VmRecord, ctx: LaunchContext): Promise<void> {
    await this.killInFlight(ctx.paths, vm.id)
    mkdirSync(ctx.paths.vmDir(vm.id), {recursive: true, mode: 0o700})
    writeFileSync(this.stoppedMarker(ctx.paths, vm.id), `${new Date().toISOString()}\n`)
  }

  async remove(vm: VmRecord, ctx: LaunchContext): Promise<void> {
    const {paths} = ctx
    await this.killInFlight(paths, vm.id)
    const name = krunvmName(vm.id)
    if (this.definedVms(paths).has(name)) {
      try {
        await this.admin(paths, ['delete', name], `krunvm delete ${name}`)
      } catch (err) {
        if (!(err instanceof AgentError && err.kind === 'not_found')) throw err
      }
    }
    rmSync(this.lockFile(paths, vm.id), {force: true})
    rmSync(this.stoppedMarker(paths, vm.id), {force: true})
    rmSync(join(paths.vmDir(vm.id), 'krunvm.seq'), {force: true})
    rmSync(join(paths.inDir(vm.id), '.agent'), {recursive: true, force: true})
  }

  async status(vms: readonly VmRecord[], ctx: Pick<LaunchContext, 'paths'>): Promise<Map<string, RuntimeState>> {
    const defined = this.definedVms(ctx.paths)
    const out = new Map<string, RuntimeState>()
    for (const vm of vms) {
      if (!defined.has(krunvmName(vm.id))) out.set(vm.id, 'missing')
      else if (existsSync(this.stoppedMarker(ctx.paths, vm.id))) out.set(vm.id, 'stopped')
      else out.set(vm.id, 'running')
    }
    return out
  }

  async exec(vm: VmRecord, ctx: LaunchContext, req: ExecRequest): Promise<ExecResult> {
    const {paths} = ctx
    const name = krunvmName(vm.id)
    const bin = this.requireBinary()
    if (req.argv.length === 0) throw usageError('nothing to run')
    const def = this.definedVms(paths).get(name)
    if (!def) throw new AgentError('not_found', `krunvm has no VM ${name}`, {hint: `clean it with \`agent vm clean ${vm.id}\``})
    const inHost = Object.entries(def.mappedVolumes).find(([, g]) => g === GUEST_IN)?.[0]
    const volumes = inHost !== undefined
    const env = {...ctx.env, ...req.env}

    if (!volumes) {
      const ref = [...req.argv, req.workdir ?? ''].find((a) => /(^|[\s'"=:])\/(in|out|persist)(\/|$|[\s'"])/.test(a))
      if (ref !== undefined) {
        throw new AgentError('unavailable', `VM ${vm.id} (krunvm) has no guest volumes, so /in, /out and /persist do not exist in it (referenced by ${JSON.stringify(ref.slice(0, 80))})`, {
          hint: VOLUMES_HINT,
        })
      }
    }

    const lock = this.acquireLock(paths, vm.id)
    let scriptHost: string | undefined
    let markerHost: string | undefined
    try {
      let guestArgv: string[]
      if (volumes) {
        const n = this.nextSeq(paths, vm.id)
        const dir = this.agentDir(paths, vm.id, inHost)
        scriptHost = join(dir, `cmd-${n}.sh`)
        markerHost = join(dir, `cmd-${n}.started`)
        const script = guestScript({argv: req.argv, env, workdir: req.workdir, marker: `${GUEST_IN}/.agent/cmd-${n}.started`})
        rmSync(scriptHost, {force: true})
        rmSync(markerHost, {force: true})
        writeFileSync(scriptHost, script, {flag: 'wx', mode: 0o644})
        guestArgv = ['/bin/sh', `${GUEST_IN}/.agent/cmd-${n}.sh`]
      } else {
        const script = guestScript({argv: req.argv, env, workdir: req.workdir, inline: true})
        const bytes = Buffer.byteLength(script) + Buffer.byteLength('/bin/sh -c ') + 8
        if (bytes > INLINE_LIMIT_BYTES) {
          throw usageError(
            `the command is too long for a krunvm VM without guest volumes (${bytes} bytes; limit ${INLINE_LIMIT_BYTES}): it would travel on the guest kernel command line`,
            VOLUMES_HINT,
          )
        }
        // libkrun puts the arguments on the kernel command line quoted but not escaped.
        if (CMDLINE_UNSAFE.test(script)) throw new AgentError('internal', 'inline krunvm script is not command-line safe')
        guestArgv = ['/bin/sh', '-c', script]
      }
      return await this.runStart(bin, paths, vm, name, guestArgv, req, lock, markerHost)
    } finally {
      if (scriptHost) rmSync(scriptHost, {force: true})
      if (markerHost) rmSync(markerHost, {force: true})
      this.releaseLock(paths, vm.id, lock.token)
    }
  }

  private async runStart(
    bin: string,
    paths: StatePaths,
    vm: VmRecord,
    name: string,
    guestArgv: string[],
    req: ExecRequest,
    lock: LockInfo,
    markerHost: string | undefined,
  ): Promise<ExecResult> {
    const args = startArgv(name, guestArgv)
    const t0 = performance.now()
    // Its own process group (unless it reads our terminal), so a kill reaches everything it started.
    const group = req.stdin !== 'inherit'
    logger().debug(`krunvm ${args.map((a) => (a.length > 120 ? `${a.slice(0, 120)}...` : a)).join(' ')}`)
    const sub = execa(bin, args, {
      env: this.krunvmEnv(paths),
      extendEnv: false,
      reject: false,
      buffer: false,
      detached: group,
      stdin: req.stdin === 'inherit' ? 'inherit' : req.stdin ? 'pipe' : 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
    })
    if (sub.pid) this.writeLock(paths, vm.id, {...lock, krunvmPid: sub.pid, group})
    if (req.stdin && req.stdin !== 'inherit' && sub.stdin) {
      sub.stdin.on('error', () => undefined)
      req.stdin.pipe(sub.stdin)
    }

    const max = req.maxCaptureBytes ?? 16 * 1024 * 1024
    const cap = {stdout: new CappedOutput(max), stderr: new CappedOutput(max)}
    const tail = {stdout: new Tail(), stderr: new Tail()}
    for (const stream of ['stdout', 'stderr'] as const) {
      sub[stream]?.on('data', (b: Buffer) => {
        tail[stream].push(b)
        req.onOutput?.(stream, b)
        if (req.output === 'capture') cap[stream].push(b)
        else (stream === 'stdout' ? process.stdout : process.stderr).write(b)
      })
    }

    let timedOut = false
    let aborted = false
    let graceTimer: NodeJS.Timeout | undefined
    const terminate = () => {
      if (!sub.pid || graceTimer) return
      killProc(sub.pid, group, 'SIGTERM')
      graceTimer = setTimeout(() => killProc(sub.pid!, group, 'SIGKILL'), this.graceMs)
    }
    const timer = setTimeout(() => {
      timedOut = true
      terminate()
    }, Math.max(0, req.timeoutSec) * 1000)
    const onAbort = () => {
      aborted = true
      terminate()
    }
    if (req.signal?.aborted) onAbort()
    else req.signal?.addEventListener('abort', onAbort, {once: true})

    const res = await sub
    clearTimeout(timer)
    if (graceTimer) clearTimeout(graceTimer)
    req.signal?.removeEventListener('abort', onAbort)
    // Leave nothing behind from krunvm's process group.
    if (group && sub.pid) killProc(sub.pid, true, 'SIGKILL')
    const durationMs = Math.round(performance.now() - t0)

    const result = (exitCode: number, extra: Partial<ExecResult> = {}): ExecResult => ({
      exitCode,
      timedOut: false,
      oom: false,
      stdout: req.output === 'capture' ? cap.stdout.text() : '',
      stderr: req.output === 'capture' ? cap.stderr.text() : '',
      stdoutTruncated: cap.stdout.truncated,
      stderrTruncated: cap.stderr.truncated,
      durationMs,
      ...extra,
    })
    if (timedOut) return result(124, {timedOut: true})
    if (aborted) return result(130)
    if (res.exitCode === undefined && !res.signal) {
      throw unavailable(`cannot run krunvm (${bin}): ${res.shortMessage ?? res.message ?? 'spawn failed'}`, INSTALL_FIX)
    }
    const code = res.exitCode ?? 128 + signalNumber(res.signal)
    const out = tail.stdout.toString()
    const err = tail.stderr.toString()
    if (markerHost !== undefined) {
      // With volumes the guest script leaves a marker first: no marker means the guest never ran.
      // (Exit 0 without a marker is passed on: libkrun < 1.12 always exits 0, and a guest may delete /in.)
      if (!isRegularFile(markerHost) && code !== 0 && !res.signal) {
        throw krunvmFailure(`krunvm start ${name}`, code, out, err, vm.id)
      }
    } else if (looksLikeKrunvmFailure(code, out, err)) {
      throw krunvmFailure(`krunvm start ${name}`, code, out, err, vm.id)
    }
    return result(code)
  }

  /** Kills a krunvm process recorded in the VM's lock (SIGTERM, then SIGKILL after the grace time). */
  private async killInFlight(paths: StatePaths, id: string): Promise<void> {
    const info = this.readLock(paths, id)
    if (!info?.krunvmPid || !alive(info.krunvmPid)) {
      if (info && !alive(info.pid)) rmSync(this.lockFile(paths, id), {force: true})
      return
    }
    killProc(info.krunvmPid, info.group, 'SIGTERM')
    const deadline = Date.now() + this.graceMs
    while (alive(info.krunvmPid) && Date.now() < deadline) await sleep(50)
    if (alive(info.krunvmPid)) killProc(info.krunvmPid, info.group, 'SIGKILL')
    const until = Date.now() + 2000
    while (alive(info.krunvmPid) && Date.now() < until) await sleep(20)
    if (!alive(info.pid)) rmSync(this.lockFile(paths, id), {force: true})
  }

  // ---------------------------------------------------------------- host-side files

  private lockFile(paths: StatePaths, id: string): string {
    return join(paths.vmDir(id), 'krunvm.lock')
  }

  private stoppedMarker(paths: StatePaths, id: string): string {
    return join(paths.vmDir(id), 'krunvm.stopped')
  }

  /**
   * `<in>/.agent`, made safe: the guest can write /in, so a symlink planted there is removed rather
   * than followed (no guest code runs while agent writes here: only one krunvm start runs at a time).
   */
  private agentDir(paths: StatePaths, id: string, inHost = paths.inDir(id)): string {
    mkdirSync(inHost, {recursive: true, mode: 0o700})
    const dir = join(inHost, '.agent')
    try {
      const st = lstatSync(dir)
      if (!st.isDirectory() || st.isSymbolicLink()) rmSync(dir, {recursive: true, force: true})
    } catch {
      // absent
    }
    mkdirSync(dir, {recursive: true, mode: 0o755})
    if (lstatSync(dir).isSymbolicLink()) throw new AgentError('internal', `${dir} is a symlink`)
    return dir
  }

  /** Per-VM command counter (host-only, under the VM dir; callers hold the lock). */
  private nextSeq(paths: StatePaths, id: string): number {
    const f = join(paths.vmDir(id), 'krunvm.seq')
    let n = 0
    try {
      n = Number.parseInt(readFileSync(f, 'utf8'), 10) || 0
    } catch {
      // first command
    }
    n += 1
    writeFileSync(f, `${n}\n`)
    return n
  }

  private readLock(paths: StatePaths, id: string): LockInfo | undefined {
    try {
      return JSON.parse(readFileSync(this.lockFile(paths, id), 'utf8')) as LockInfo
    } catch {
      return undefined
    }
  }

  private writeLock(paths: StatePaths, id: string, info: LockInfo): void {
    const f = this.lockFile(paths, id)
    const tmp = `${f}.${process.pid}.${info.token}.tmp`
    writeFileSync(tmp, JSON.stringify(info))
    renameSync(tmp, f)
  }

  /**
   * One command at a time per VM (krunvm itself would fail on `<rootfs>/.krunvm.lock`). The lock file
   * is made complete and then hard-linked into place, so it appears atomically or not at all. A lock
   * whose agent process and krunvm process are both dead is stale and taken over. A live one is
   * refused at once (no waiting): the caller gets a conflict error.
   */
  private acquireLock(paths: StatePaths, id: string): LockInfo {
    mkdirSync(paths.vmDir(id), {recursive: true, mode: 0o700})
    const f = this.lockFile(paths, id)
    const info: LockInfo = {pid: process.pid, token: randomBytes(6).toString('hex'), startedAt: new Date().toISOString()}
    const tmp = `${f}.${process.pid}.${info.token}.tmp`
    writeFileSync(tmp, JSON.stringify(info), {mode: 0o600})
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          linkSync(tmp, f)
          return info
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
        }
        const held = this.readLock(paths, id)
        if (held && (alive(held.pid) || alive(held.krunvmPid))) {
          throw conflict(`VM ${id} is busy running another command (agent pid ${held.pid}${held.krunvmPid ? `, krunvm pid ${held.krunvmPid}` : ''})`, `wait for it to finish, or stop it with \`agent vm stop ${id}\``)
        }
        logger().debug(`${id}: taking over a stale krunvm lock (${held ? `pid ${held.pid}` : 'unreadable'})`)
        rmSync(f, {force: true})
      }
      throw conflict(`VM ${id} is busy running another command`)
    } finally {
      rmSync(tmp, {force: true})
    }
  }

  private releaseLock(paths: StatePaths, id: string, token: string): void {
    const held = this.readLock(paths, id)
    if (held?.token === token) rmSync(this.lockFile(paths, id), {force: true})
  }
}

function isExecutable(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false
    accessSync(p, constants.X_OK)
    return true
  } catch {
    return false
  }
}

function isRegularFile(p: string): boolean {
  try {
    return lstatSync(p).isFile()
  } catch {
    return false
  }
}

function signalNumber(sig: string | undefined): number {
  return (sig ? (osConstants.signals as Record<string, number>)[sig] : undefined) ?? 1
}

/** Without a guest marker: does this exit look like krunvm's own failure rather than the guest's? */
export function looksLikeKrunvmFailure(code: number, stdout: string, stderr: string): boolean {
  const lastOut = lastLines(stdout, 1)
  if (code === 255 && KRUNVM_MESSAGE.test(lastOut)) return true
  if (code === 101 && /panicked at/.test(stderr)) return true
  if (code === 2 && /(^|\n)error: [\s\S]*Usage: krunvm /.test(stderr)) return true
  return false
}

/** The messages krunvm 0.2.6 prints (on stdout) before exiting 255. */
const KRUNVM_MESSAGE =
  /^(No VM found with|Couldn't acquire lock file|Error (starting VM|setting VM|creating directory|mounting volume|executing buildah)|buildah returned an error|krunvm requires buildah|Please re-run krunvm|A VM with this name already exists|Invalid |The volume has been configured|Please enter the mountpoint)/

/** Maps a failed krunvm call to an AgentError that carries krunvm's own message. */
export function krunvmFailure(what: string, code: number, stdout: string, stderr: string, vmId?: string): AgentError {
  const text = (code === 255 ? lastLines(stdout) || lastLines(stderr) : lastLines(stderr) || lastLines(stdout)) || 'no output'
  if (/Couldn't acquire lock file/.test(stdout)) {
    return conflict(`VM ${vmId ?? '?'} is busy running another command (krunvm: ${text})`, vmId ? `wait for it to finish, or stop it with \`agent vm stop ${vmId}\`` : undefined)
  }
  if (/No VM found with/.test(stdout)) {
    return new AgentError('not_found', `${what} failed: krunvm: ${text}`, {hint: vmId ? `clean it with \`agent vm clean ${vmId}\`` : undefined})
  }
  if (code === 101 || /panicked at/.test(stderr)) {
    return new AgentError('internal', `${what} failed: krunvm crashed (exit ${code}): ${text}`, {hint: 'run again with --log-level debug; this is a krunvm bug'})
  }
  if (code === 2 && /Usage: krunvm/.test(stderr)) {
    return new AgentError('internal', `${what} failed: krunvm rejected its arguments: ${text}`)
  }
  if (/macOS, krunvm requires a dedicated|Please enter the mountpoint/.test(stdout)) {
    return unavailable(`${what} failed: krunvm has no storage volume configured`, 'run scripts/macos/setup.sh')
  }
  if (/Please re-run krunvm inside/.test(stdout)) {
    return unavailable(`${what} failed: krunvm: ${text}`, 'run agent as root, or inside `buildah unshare`')
  }
  return unavailable(`${what} failed (krunvm exit ${code}): ${text}`, 'check that krunvm works: `krunvm list`; or use --runtime gvisor')
}
