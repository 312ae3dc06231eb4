import {existsSync} from 'node:fs'
import {AgentError, errorMessage, notFound, unavailable} from '../errors.js'
import {findBinary, lastLines, tryRun} from '../system/index.js'
import type {ImageStore} from './storage.js'

export interface BuildahImage {
  /** Short (12 hex) image id, as `buildah images` prints it. */
  id: string
  names: string[]
  /** Human size as buildah reports it ("204 MB"). */
  size?: string
  /** ISO time of creation. */
  created?: string
}

export interface BuildahContainer {
  id: string
  name: string
  image: string
}

export interface BuildOptions {
  containerfile: string
  contextDir: string
  tag: string
  noCache?: boolean
  buildArgs?: Record<string, string>
  /** Lines of build output, for progress. */
  onLine?: (line: string) => void
  signal?: AbortSignal
}

export interface ExecOptions {
  timeoutMs?: number
  input?: string
  /** Extra environment (on top of the store's). */
  env?: Record<string, string>
  /** Each non-empty line of combined output, as it arrives. */
  onLine?: (line: string) => void
  signal?: AbortSignal
  cwd?: string
}

export interface ExecResult {
  exitCode?: number
  stdout: string
  all: string
  timedOut: boolean
  /** Set when the program could not be started at all. */
  spawnError?: string
}

/** buildah subcommands that may write containers/image's blob-info cache (see ImageStore.hostDir). */
const CACHE_WRITERS = new Set(['pull', 'build', 'bud', 'commit', 'push', 'from'])

/**
 * In a private mount namespace: stand our dir in for /var/lib/containers (or, when it does not
 * exist, make /var/lib read-only there so nothing can create it; the blob-info cache then stays
 * in memory), then run the command. Mounts made this way vanish with the process.
 */
const ISOLATE_SH = `host=$1 store=$2; shift 2
case "$store/" in /var/lib/containers/*) exec "$@" ;; esac
if [ -d /var/lib/containers ]; then
  mount --bind "$host" /var/lib/containers || echo "agent: cannot isolate /var/lib/containers" >&2
elif [ -d /var/lib ]; then
  if mount --rbind /var/lib /var/lib && mount -o remount,bind,ro /var/lib; then
    case "$store/" in /var/lib/*) mount --bind "$store" "$store" && mount -o remount,bind,rw "$store" ;; esac
  fi
fi
exec "$@"`

/** The host agent runs on, as far as buildah's choice of image platform goes (injectable for tests). */
export interface BuildahHost {
  platform: NodeJS.Platform
}

/**
 * `--os`/`--arch` for pulls and working containers. containers/image picks the image's OS from the
 * host unless told, so on macOS it would look for a darwin image; krunvm passes `--os linux` to
 * buildah there too. libkrun on macOS runs arm64 guests only (Hypervisor.framework on Apple
 * silicon), so the arch is arm64 even when node itself runs under Rosetta. Elsewhere: the host's own.
 */
export function platformArgs(host: BuildahHost): string[] {
  return host.platform === 'darwin' ? ['--os', 'linux', '--arch', 'arm64'] : []
}

/** The path of `bin` when it is an executable on PATH (or a path already). */
export function onPath(bin: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return bin.includes('/') ? bin : findBinary(bin, env)
}

/** Thin wrapper over the buildah CLI: argv arrays only, our storage config in the environment. */
export class Buildah {
  private readonly isolate: boolean

  constructor(
    readonly store: ImageStore,
    readonly bin = process.env.AGENT_BUILDAH ?? 'buildah',
    readonly host: BuildahHost = {platform: process.platform},
  ) {
    this.isolate =
      Boolean(store.dir && store.hostDir) && process.geteuid?.() === 0 && process.env.AGENT_NO_MOUNT_NS !== '1' && onPath('unshare') !== undefined
  }

  /** The environment every buildah call gets: the caller's, our storage config, and a working OCI runtime. */
  env(extra: Record<string, string> = {}): Record<string, string> {
    const env: Record<string, string> = {...(process.env as Record<string, string>), ...this.store.env, ...extra}
    // crun refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported"); runc copes with both.
    if (!env.BUILDAH_RUNTIME) {
      const runtime = env.AGENT_BUILDAH_RUNTIME || (onPath('runc', env) ? 'runc' : undefined)
      if (runtime) env.BUILDAH_RUNTIME = runtime
    }
    return env
  }

  get policyArgs(): string[] {
    return this.store.policy ? ['--signature-policy', this.store.policy] : []
  }

  /** The argv that runs `file args` isolated from /var/lib/containers when the store is ours. */
  private wrap(file: string, args: readonly string[], isolate: boolean): [string, string[]] {
    if (!isolate || !this.isolate) return [file, [...args]]
    return ['unshare', ['--mount', '--propagation', 'private', '--', 'sh', '-c', ISOLATE_SH, 'sh', this.store.hostDir!, this.store.dir!, file, ...args]]
  }

  /** Runs any program (buildah, or a recipe script that calls buildah) with our storage environment. */
  async exec(file: string, args: readonly string[], opts: ExecOptions & {isolate?: boolean} = {}): Promise<ExecResult> {
    // A store configuration agent would not write itself is refused before buildah sees it.
    if (this.store.problem) throw unavailable(this.store.problem.reason, this.store.problem.fix)
    const [cmd, argv] = this.wrap(file, args, opts.isolate ?? true)
    const res = await tryRun(cmd, argv, {
      env: this.env(opts.env),
      extendEnv: false,
      timeoutMs: opts.timeoutMs,
      input: opts.input,
      signal: opts.signal,
      cwd: opts.cwd,
      onLine: opts.onLine,
    })
    return {
      exitCode: res.exitCode,
      stdout: res.stdout,
      all: res.all,
      timedOut: res.timedOut,
      spawnError: res.missing ? `cannot run ${cmd}` : undefined,
    }
  }

  /** Runs buildah. Writing subcommands are isolated from /var/lib/containers; `mount` never is (its mount must outlive the call). */
  async run(args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return this.exec(this.bin, args, {...opts, isolate: CACHE_WRITERS.has(args[0] ?? '')})
  }

  /** Runs buildah and returns stdout, throwing a readable error on failure. */
  async check(args: readonly string[], what: string, opts: ExecOptions & {kind?: 'internal' | 'image'} = {}): Promise<string> {
    let res
    try {
      res = await this.run(args, opts)
    } catch (err) {
      if (err instanceof AgentError) throw err
      throw unavailable(`cannot run buildah: ${errorMessage(err)}`, 'install buildah (apt-get install buildah)', err)
    }
    if (res.spawnError) throw unavailable(`buildah is not installed or not on PATH (${this.bin}): ${res.spawnError}`, 'install buildah (apt-get install buildah)')
    if (res.timedOut) throw new AgentError('image', `${what} timed out after ${Math.round((opts.timeoutMs ?? 0) / 1000)}s`)
    if (res.exitCode !== 0) throw new AgentError(opts.kind ?? 'internal', `${what} failed: ${buildahError(res.all)}`)
    return res.stdout.trim()
  }

  async version(): Promise<string> {
    return this.check(['--version'], 'buildah --version')
  }

  /** Pulls an image; throws AgentError('image') naming the reason (unreachable registry, timeout, unknown image). */
  async pull(ref: string, timeoutMs = 120_000): Promise<string> {
    return this.check(['pull', ...this.policyArgs, ...platformArgs(this.host), '--quiet', '--retry', '1', '--retry-delay', '1s', ref], `pulling ${ref}`, {timeoutMs, kind: 'image'})
  }

  /**
   * `buildah build --layers`: a failed build tags nothing and, with --force-rm, leaves no working
   * container behind (cached layers of the steps that succeeded stay, unnamed, for the next try).
   */
  async build(opts: BuildOptions): Promise<void> {
    const args = ['build', ...this.policyArgs, '--layers', '--force-rm', '--network', 'host', '--pull-never', '-f', opts.containerfile, '-t', opts.tag]
    if (opts.noCache) args.push('--no-cache')
    for (const [k, v] of Object.entries(opts.buildArgs ?? {})) args.push('--build-arg', `${k}=${v}`)
    args.push(opts.contextDir)
    const tail: string[] = []
    const res = await this.run(args, {
      signal: opts.signal,
      onLine: (line) => {
        tail.push(line)
        if (tail.length > 20) tail.shift()
        opts.onLine?.(line)
      },
    })
    if (res.spawnError) throw unavailable(`buildah is not installed or not on PATH (${this.bin}): ${res.spawnError}`, 'install buildah (apt-get install buildah)')
    if (res.exitCode !== 0) {
      const why = tail.filter((l) => /error|fail|unable|cannot|denied/i.test(l)).slice(-3)
      throw new AgentError('image', `building ${opts.tag} failed: ${(why.length ? why : tail.slice(-3)).join(' | ') || `exit ${res.exitCode}`}`)
    }
  }

  async images(): Promise<BuildahImage[]> {
    const out = await this.check(['images', '--json'], 'listing images')
    if (!out || out === 'null') return []
    const rows = JSON.parse(out) as Array<{id: string; names?: string[] | null; size?: string | number; createdatraw?: string; created?: number}>
    return rows.map((r) => ({
      id: r.id,
      names: r.names ?? [],
      size: r.size === undefined ? undefined : String(r.size),
      created: r.createdatraw ?? (r.created ? new Date(r.created * 1000).toISOString() : undefined),
    }))
  }

  /** Inspect data for an image, or undefined when it is not in local storage. */
  async inspectImage(ref: string): Promise<Record<string, unknown> | undefined> {
    const res = await this.run(['inspect', '--type', 'image', ref])
    if (res.spawnError) throw unavailable(`buildah is not installed or not on PATH (${this.bin}): ${res.spawnError}`, 'install buildah (apt-get install buildah)')
    if (res.exitCode !== 0) return undefined
    return JSON.parse(res.stdout) as Record<string, unknown>
  }

  /** The full image id of a local image, or undefined. */
  async imageId(ref: string): Promise<string | undefined> {
    const res = await this.run(['inspect', '--type', 'image', '--format', '{{.FromImageID}}', ref])
    if (res.spawnError) throw unavailable(`buildah is not installed or not on PATH (${this.bin}): ${res.spawnError}`, 'install buildah (apt-get install buildah)')
    return res.exitCode === 0 && res.stdout.trim() ? res.stdout.trim() : undefined
  }

  async imageExists(ref: string): Promise<boolean> {
    return (await this.imageId(ref)) !== undefined
  }

  async removeImage(ref: string): Promise<void> {
    const res = await this.run(['rmi', ref])
    if (res.exitCode === 0) return
    if (res.spawnError) throw unavailable(`buildah is not installed or not on PATH (${this.bin}): ${res.spawnError}`, 'install buildah (apt-get install buildah)')
    if (/image not known|not found|unknown image|no such image/i.test(res.all)) throw notFound('image', ref, 'see `agent image list`')
    if (/in use by|being used|used by a container/i.test(res.all))
      throw new AgentError('conflict', `image ${ref} is in use by a container: ${lastLines(res.all, 1)}`, {hint: 'remove the VMs that use it first (`agent vm list --all`)'})
    throw new AgentError('image', `removing image ${ref} failed: ${lastLines(res.all, 2)}`)
  }

  async tag(ref: string, tag: string): Promise<void> {
    await this.check(['tag', ref, tag], `tagging ${ref} as ${tag}`)
  }

  /** Creates a working container from a local image; never pulls. */
  async from(image: string, name: string): Promise<string> {
    return this.check(['from', ...this.policyArgs, ...platformArgs(this.host), '--pull-never', '--name', name, image], `creating working container from ${image}`)
  }

  async fromScratch(name: string): Promise<string> {
    return this.check(['from', ...platformArgs(this.host), '--name', name, 'scratch'], 'creating scratch container')
  }

  async mount(container: string): Promise<string> {
    return this.check(['mount', container], `mounting ${container}`)
  }

  /** Idempotent: a container that is gone or unmounted is fine. */
  async umount(container: string): Promise<void> {
    await this.run(['umount', container])
  }

  /** Idempotent: a container that is already gone is fine. */
  async rm(container: string): Promise<void> {
    const res = await this.run(['rm', container])
    if (res.exitCode !== 0 && !/container not known|no container with name|not found/i.test(res.all)) {
      throw new AgentError('internal', `removing container ${container} failed: ${lastLines(res.all, 2)}`)
    }
  }

  async containers(): Promise<BuildahContainer[]> {
    const out = await this.check(['containers', '--json'], 'listing containers')
    if (!out || out === 'null') return []
    const rows = JSON.parse(out) as Array<{id: string; containername: string; imagename: string}>
    return rows.map((r) => ({id: r.id, name: r.containername, image: r.imagename}))
  }

  async containerExists(name: string): Promise<boolean> {
    const res = await this.run(['inspect', '--type', 'container', '--format', '{{.ContainerID}}', name])
    return res.exitCode === 0
  }

  async config(container: string, args: readonly string[]): Promise<void> {
    await this.check(['config', ...args, container], `configuring ${container}`)
  }

  /**
   * The directory holding a container's own layer (its writable diff) in the overlay storage
   * driver: `<graphroot>/overlay/<layer>/diff`, next to the `merged` dir that `buildah mount`
   * prints. The container is left unmounted. Throws `unavailable` for another storage driver.
   */
  async layerDiffDir(container: string): Promise<string> {
    const merged = await this.mount(container)
    await this.umount(container)
    const diff = merged.replace(/\/merged$/, '/diff')
    if (diff === merged || !existsSync(diff)) {
      throw unavailable(`cannot find the layer directory of ${container} (buildah mounted it at ${merged}): the image store does not use the overlay driver`, 'use the overlay storage driver (agent\'s own image store does)')
    }
    return diff
  }

  async commit(container: string, tag: string): Promise<void> {
    await this.check(['commit', ...this.policyArgs, '--quiet', '--rm', container, tag], `committing ${tag}`)
  }
}

/** The reason buildah gave: its last `Error:` line, else the last lines of output. */
export function buildahError(all: string): string {
  const errs = all.split('\n').filter((l) => l.startsWith('Error: '))
  return errs.length ? errs[errs.length - 1].slice('Error: '.length).trim() : lastLines(all, 3)
}

export {lastLines}
