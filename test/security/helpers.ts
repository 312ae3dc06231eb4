/**
 * Helpers for the security and reliability suite: bystander VMs, host-side probes (process
 * counts, cgroups, leftovers), agent processes we can watch, and throw-away test hosts in
 * network namespaces. Host commands are argv arrays only; no shell on the host.
 */
import {execa, type ResultPromise} from 'execa'
import {randomBytes} from 'node:crypto'
import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {existsSync, lstatSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {expect} from 'vitest'
import {AGENT_BIN, type AgentResult, type RunOptions} from '../helpers/agent.js'
import {buildahContainers, runtimeContainers, vmDirs} from '../helpers/host.js'

export const LAUNCHERS = ['gvisor', 'runc'] as const
export type OciLauncherName = (typeof LAUNCHERS)[number]
export type Agent = (args: string[], opts?: RunOptions) => Promise<AgentResult>

export const rand = (n = 4) => randomBytes(n).toString('hex')

/**
 * Guest processes as "pid<TAB>cmdline" lines, without ps (not in the images) and without ls
 * (coreutils' ls/stat fail with EINVAL under runsc 20221219): python reads /proc.
 */
export const GUEST_PS = `python3 -c "
import os
for p in os.listdir('/proc'):
    if p.isdigit() and int(p) != os.getpid():
        try: print(p + chr(9) + open('/proc/%s/cmdline' % p, 'rb').read().replace(bytes(1), b' ').decode().strip())
        except OSError: pass
"`

/** Creates a VM and returns its id; fails the test with agent's stderr otherwise. */
export async function createVm(a: Agent, args: string[]): Promise<string> {
  const r = await a(['vm', 'create', '--language', 'python', ...args])
  expect(r.code, r.stderr).toBe(0)
  const id = r.stdout.trim()
  expect(id).toMatch(/^python-[0-9a-f]{8}$/)
  return id
}

/**
 * A second VM next to the attacker. It holds a marker file and must answer a command correctly
 * after every hostile case: a sandbox must not be able to harm its neighbour.
 */
export class Bystander {
  id = ''
  readonly marker = `bystander-${rand(8)}`
  constructor(private readonly a: Agent) {}

  async create(args: string[] = []): Promise<string> {
    this.id = await createVm(this.a, ['--mem', '64', ...args])
    const w = await this.a(['vm', 'exec', '--vm', this.id, '--cmd', `echo ${this.marker} > /root/marker`])
    expect(w.code, w.stderr).toBe(0)
    return this.id
  }

  /** Still running, still answers, marker intact. */
  async expectUnaffected(): Promise<void> {
    const r = await this.a(['vm', 'exec', '--vm', this.id, '--cmd', 'cat /root/marker; echo $((6*7))'])
    expect(r.code, `bystander ${this.id}: ${r.stderr}`).toBe(0)
    expect(r.stdout).toBe(`${this.marker}\n42\n`)
  }
}

/**
 * Host processes that belong to one test state dir: every process in its VMs' pids cgroups (runc's
 * container; runsc's sentry, gofer and stubs) and every process naming the state dir or one of its
 * VMs on its command line (runsc/runc exec, slirp4netns). A guest cannot leave its cgroup, so this
 * sees a runaway or leaked process, and unlike a count of all host processes it does not move when
 * other test files start VMs alongside (they run in parallel on the same host).
 */
export function stateDirProcesses(stateDir: string): number[] {
  const ids = vmDirs(stateDir)
  const pids = new Set<number>()
  for (const id of ids) {
    const p = cgroupFile('pids', id, 'cgroup.procs')
    if (!p) continue
    try {
      for (const l of readFileSync(p, 'utf8').split('\n')) if (l.trim()) pids.add(Number(l))
    } catch {
      // the cgroup went away meanwhile
    }
  }
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8')
      if (cmd.includes(stateDir) || ids.some((id) => cmd.includes(id))) pids.add(Number(d))
    } catch {
      // gone
    }
  }
  return [...pids]
}

/**
 * Number of host processes: those of one test state dir when given (see stateDirProcesses: the
 * robust measure while other test files run), else all of /proc/[0-9]*.
 */
export function hostProcessCount(stateDir?: string): number {
  if (stateDir !== undefined) return stateDirProcesses(stateDir).length
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).length
}

/**
 * The host is healthy: the process count is not far above a baseline taken with the same
 * `stateDir` argument. Without a state dir this counts every host process, which other test files
 * move by hundreds; pass the state dir.
 */
export function expectHostProcessesNear(baseline: number, tolerance = 300, stateDir?: string): void {
  const now = hostProcessCount(stateDir)
  const what = stateDir === undefined ? 'host processes' : `host processes of ${stateDir}`
  expect(now, `${what}: ${now}, baseline ${baseline}`).toBeLessThan(baseline + tolerance)
}

/** A cgroup v1 file of a VM (controllers may be mounted alone or combined, e.g. cpu,cpuacct). */
export function cgroupFile(controller: string, id: string, file: string): string | undefined {
  const root = '/sys/fs/cgroup'
  let dirs: string[] = []
  try {
    dirs = readdirSync(root).filter((d) => d.split(',').includes(controller))
  } catch {
    return undefined
  }
  for (const d of dirs) {
    const p = join(root, d, 'agent', id, file)
    if (existsSync(p)) return p
  }
  return undefined
}

/**
 * One counter of a keyed cgroup v1 file ("key value" lines), e.g. pids.events `max` (forks the
 * pids limit refused), memory.oom_control `oom_kill`, cpu.stat `nr_throttled`. The kernel counts
 * these, so unlike sampling a current value they cannot miss a short peak on a loaded host.
 */
export function readCgroupCounter(controller: string, id: string, file: string, key: string): number | undefined {
  const p = cgroupFile(controller, id, file)
  if (!p) return undefined
  try {
    const line = readFileSync(p, 'utf8').split('\n').find((l) => l.split(/\s+/)[0] === key)
    return line === undefined ? undefined : Number(line.split(/\s+/)[1])
  } catch {
    return undefined
  }
}

export function readCgroupNumber(controller: string, id: string, file: string): number | undefined {
  const p = cgroupFile(controller, id, file)
  if (!p) return undefined
  try {
    return Number(readFileSync(p, 'utf8').trim())
  } catch {
    return undefined
  }
}

/** Host processes in the VM's pids cgroup (the sandbox itself: runc's container, or runsc's sentry, gofer and stubs). */
export function vmHostProcesses(id: string): number {
  const p = cgroupFile('pids', id, 'cgroup.procs')
  if (!p) return 0
  try {
    return readFileSync(p, 'utf8').split('\n').filter(Boolean).length
  } catch {
    return 0
  }
}

/**
 * Bytes allocated on the host under `dir` (st_blocks, sparse files count what they use), not
 * descending into other file systems mounted below it (a VM's loop-mounted disk, its rootfs).
 * Unlike the free space of the whole file system, other test files writing alongside do not move it.
 */
export function allocatedBytes(dir: string): number {
  const dev = lstatSync(dir).dev
  let total = 0
  const walk = (d: string) => {
    let entries: string[] = []
    try {
      entries = readdirSync(d)
    } catch {
      return
    }
    for (const e of entries) {
      const p = join(d, e)
      let st
      try {
        st = lstatSync(p)
      } catch {
        continue
      }
      if (st.dev !== dev) continue
      total += st.blocks * 512
      if (st.isDirectory()) walk(p)
    }
  }
  walk(dir)
  return total
}

/** Free bytes of the file system holding `dir` (statfs). */
export async function freeBytes(dir: string): Promise<number> {
  const {statfs} = await import('node:fs/promises')
  const s = await statfs(dir)
  return s.bavail * s.bsize
}

/** Runs agent as a child we can watch (pid for /proc sampling); output is counted, not kept. */
export function spawnAgent(args: string[], env: Record<string, string>): {proc: ResultPromise; bytes: () => number} {
  let n = 0
  const proc = execa(process.execPath, [AGENT_BIN, ...args], {env: {NO_COLOR: '1', ...env}, extendEnv: true, reject: false, buffer: false, stdin: 'ignore', timeout: 120_000})
  proc.stdout?.on('data', (b: Buffer) => (n += b.length))
  proc.stderr?.on('data', () => undefined)
  return {proc, bytes: () => n}
}

/** Peak of VmHWM / VmRSS (KiB) of a process while `until` is pending, sampled every 50 ms. */
export async function peakRssKib(pid: number, until: Promise<unknown>): Promise<{peakKib: number; samples: number}> {
  let peak = 0
  let samples = 0
  const sample = () => {
    try {
      const s = readFileSync(`/proc/${pid}/status`, 'utf8')
      for (const key of ['VmHWM', 'VmRSS']) {
        const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(s)
        if (m) peak = Math.max(peak, Number(m[1]))
      }
      samples++
    } catch {
      // exited
    }
  }
  const timer = setInterval(sample, 50)
  sample()
  await until.catch(() => undefined)
  clearInterval(timer)
  return {peakKib: peak, samples}
}

/** Waits until `text` appears on a child's stderr (e.g. agent's test-pause line). */
export function waitForStderr(proc: ResultPromise, text: string, timeoutMs = 60_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = ''
    const timer = setTimeout(() => reject(new Error(`no "${text}" on stderr within ${timeoutMs} ms; got: ${seen.slice(-500)}`)), timeoutMs)
    proc.stderr?.on('data', (b: Buffer) => {
      seen += b.toString()
      if (seen.includes(text)) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
}

/** Everything a VM can leave on the host, for a state dir and a set of ids. Empty arrays mean clean. */
export async function hostLeftovers(stateDir: string, ids: readonly string[]): Promise<Record<string, string[]>> {
  const mentions = (s: string) => s.includes(stateDir) || ids.some((id) => s.includes(id))
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(mentions)
  const loops = String((await execa('losetup', ['-a', '-l', '-n', '-O', 'NAME,BACK-FILE'], {reject: false})).stdout ?? '')
    .split('\n')
    .filter(mentions)
  const slirp: string[] = []
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' ')
      // slirp4netns and the filtering DNS (dnsmasq) of allow-list VMs: helpers that outlive agent.
      if ((cmd.includes('slirp4netns') || cmd.includes('dnsmasq')) && mentions(cmd)) slirp.push(`${p}: ${cmd}`)
    } catch {
      // gone
    }
  }
  const cgroups: string[] = []
  for (const c of readdirSync('/sys/fs/cgroup')) for (const id of ids) if (existsSync(join('/sys/fs/cgroup', c, 'agent', id))) cgroups.push(`${c}/agent/${id}`)
  const buildah = (await buildahContainers()).filter((n) => ids.some((id) => n === `agent-${id}`))
  const runtime = [...(await runtimeContainers(stateDir, 'gvisor')), ...(await runtimeContainers(stateDir, 'runc'))]
  return {mounts, loops, slirp, cgroups, buildah, runtime, dirs: vmDirs(stateDir)}
}

export const NO_LEFTOVERS = {mounts: [], loops: [], slirp: [], cgroups: [], buildah: [], runtime: [], dirs: []}

/** Removes a test state dir, but never recurses into something still mounted there. */
export function removeStateDir(dir: string): void {
  const mounted = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(dir))
  if (mounted.length) {
    console.warn(`security suite: NOT removing ${dir}: still mounted:\n${mounted.join('\n')}`)
    return
  }
  rmSync(dir, {recursive: true, force: true})
}

/** A throw-away file on the host outside any state dir, holding a unique token. */
export function hostSecretFile(): {path: string; token: string; cleanup: () => void} {
  // The name and the content differ, so a script that names the file does not hold the token.
  const token = `host-secret-${rand(8)}`
  const path = join('/var/tmp', `agent-sec-host-file-${rand(8)}`)
  writeFileSync(path, `${token}\n`, {mode: 0o600})
  return {path, token, cleanup: () => rmSync(path, {force: true})}
}

/**
 * A test host: a network namespace joined to the host by a veth pair (host 10.231.X.1/30,
 * namespace 10.231.X.2/30), with a small HTTP server in the namespace. Traffic only ever goes
 * to these addresses. Falls back to `unshare --net=<file>` when `ip netns add` misbehaves.
 */
export interface TestHost {
  ns: string
  hostIp: string
  nsIp: string
  port: number
  body: string
  cleanup: () => Promise<void>
}

/**
 * `prefix` + `slot` put the pair elsewhere: host <prefix>.<4*slot+1>/30, namespace <prefix>.<4*slot+2>/30
 * (e.g. 203.0.113 for a "public" test host, 169.254.N for a link-local one). Before returning, the
 * route to the namespace address is checked to go through the veth, so no probe can leave the machine.
 */
export async function makeTestHost(o: {prefix?: string; slot?: number} = {}): Promise<TestHost> {
  const tag = rand(3)
  const ns = `agent-sec-${tag}`
  const x = 100 + (parseInt(tag.slice(0, 2), 16) % 150)
  const hostIf = `asec${tag}h`
  const nsIf = `asec${tag}n`
  const slot = o.slot ?? 0
  const hostIp = o.prefix ? `${o.prefix}.${4 * slot + 1}` : `10.231.${x}.1`
  const nsIp = o.prefix ? `${o.prefix}.${4 * slot + 2}` : `10.231.${x}.2`
  const port = 8080
  const body = `test-host-${rand(6)}`
  const run = async (bin: string, args: string[]) => {
    const r = await execa(bin, args, {reject: false, stdin: 'ignore', all: true})
    if (r.exitCode !== 0) throw new Error(`${bin} ${args.join(' ')}: ${String(r.all).trim()}`)
  }
  let server: ResultPromise | undefined
  const cleanup = async () => {
    if (server?.pid) {
      try {
        process.kill(server.pid, 'SIGKILL')
      } catch {
        // gone
      }
      await server.catch(() => undefined)
    }
    await execa('ip', ['link', 'del', hostIf], {reject: false})
    await execa('ip', ['netns', 'del', ns], {reject: false})
    const f = `/run/netns/${ns}`
    if (existsSync(f)) {
      await execa('umount', [f], {reject: false})
      rmSync(f, {force: true})
    }
  }
  try {
    await run('ip', ['netns', 'add', ns])
    if ((await execa('ip', ['netns', 'exec', ns, 'true'], {reject: false})).exitCode !== 0) {
      // Seen once on this host: /run/netns/<name> left as a plain file. Bind the namespace ourselves.
      await execa('ip', ['netns', 'del', ns], {reject: false})
      rmSync(`/run/netns/${ns}`, {force: true})
      writeFileSync(`/run/netns/${ns}`, '')
      await run('unshare', [`--net=/run/netns/${ns}`, 'true'])
    }
    await run('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf])
    await run('ip', ['link', 'set', nsIf, 'netns', ns])
    await run('ip', ['addr', 'add', `${hostIp}/30`, 'dev', hostIf])
    await run('ip', ['link', 'set', hostIf, 'up'])
    await run('nsenter', [`--net=/run/netns/${ns}`, 'ip', 'addr', 'add', `${nsIp}/30`, 'dev', nsIf])
    await run('nsenter', [`--net=/run/netns/${ns}`, 'ip', 'link', 'set', nsIf, 'up'])
    await run('nsenter', [`--net=/run/netns/${ns}`, 'ip', 'link', 'set', 'lo', 'up'])
    const route = String((await execa('ip', ['route', 'get', nsIp], {reject: false})).stdout ?? '')
    if (!route.includes(`dev ${hostIf}`)) throw new Error(`the route to test host ${nsIp} does not go through ${hostIf}: ${route}`)
    const js = `require('http').createServer((q, s) => s.end(${JSON.stringify(body)} + '\\n')).listen(${port}, ${JSON.stringify(nsIp)}, () => console.log('listening'))`
    server = execa('nsenter', [`--net=/run/netns/${ns}`, process.execPath, '-e', js], {reject: false, stdin: 'ignore', buffer: false})
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('test host server did not start')), 15_000)
      server!.stdout?.once('data', () => {
        clearTimeout(t)
        resolve()
      })
    })
  } catch (err) {
    await cleanup()
    throw err
  }
  return {ns, hostIp, nsIp, port, body, cleanup}
}

/** A python script that tries each URL and prints "url OK body" or "url FAIL reason", one per line. */
export function probeScript(urls: string[]): string {
  return `import urllib.request
for u in ${JSON.stringify(urls)}:
    try:
        print(u, "OK", urllib.request.urlopen(u, timeout=3).read().decode().strip())
    except Exception as e:
        print(u, "FAIL", type(e).__name__)
`
}

export function parseProbe(out: string): Record<string, string> {
  const res: Record<string, string> = {}
  for (const line of out.trim().split('\n')) {
    const [u, verdict, ...rest] = line.split(' ')
    if (u) res[u] = verdict === 'OK' ? `OK ${rest.join(' ')}` : 'FAIL'
  }
  return res
}

/**
 * Cleans this state dir's VMs by id. Not `clean --all`: its orphan sweep also removes the
 * working containers of VMs in OTHER state dirs sharing the image store (reported bug), which
 * would disturb test files running alongside. Falls back to --all only if something is left.
 */
export async function cleanVms(a: Agent, stateDir: string): Promise<void> {
  const r = await a(['vm', 'list', '--all', '--json'])
  let ids: string[] = []
  try {
    ids = (JSON.parse(r.stdout) as Array<{id: string}>).map((v) => v.id)
  } catch {
    // fall through to --all
  }
  if (ids.length) await a(['vm', 'clean', '--concurrency', '4', ...ids.flatMap((id) => ['--vm', id])])
  if (vmDirs(stateDir).length || r.code !== 0) await a(['vm', 'clean', '--all'])
}

/** A one-line HTTP server on `host` (a test host's address, or loopback) that answers `body`. */
export function listen(host: string, body: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer((_q, res) => res.end(`${body}\n`))
    s.once('error', reject)
    s.listen(0, host, () => resolve(s))
  })
}
export const portOf = (s: Server) => (s.address() as AddressInfo).port
