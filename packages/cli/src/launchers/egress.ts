/**
 * Enforcing a VM's egress policy (egress-policy.ts) in its own network namespace:
 *
 *   nftables   `nsenter --net=<vmDir>/netns nft -f -` loads table inet agent_egress; it lives and
 *              dies with the namespace, so nothing on the host needs removing.
 *   dnsmasq    only for allow lists naming domains: the guest's resolver (127.0.0.1 in the VM's
 *              namespace). It forwards only the listed domains (no default server: any other
 *              name is REFUSED) and puts each answer's addresses into the resolved4/resolved6
 *              sets (--nftset). --conntrack copies the conntrack mark of the guest's query onto
 *              its upstream query, and only marked traffic may reach the upstream DNS: the guest
 *              (no CAP_NET_ADMIN, so no SO_MARK) cannot ask it directly. pid in <vmDir>/dns.pid.
 *
 * Fails closed: a missing nft or dnsmasq is an `unavailable` error and the VM does not boot.
 */
import {closeSync, openSync, readFileSync, rmSync} from 'node:fs'
import {networkInterfaces} from 'node:os'
import {join} from 'node:path'
import {AgentError, unavailable} from '../errors.js'
import {logger} from '../logging/logger.js'
import type {VmRecord} from '../state/vm-record.js'
import {didNotStart, killProcess, lastLines, pidFromFile, run, sleep, start} from '../system/index.js'
import {buildRuleset, NFT_TABLE, SLIRP_DNS, splitAllow} from './egress-policy.js'

export const NFT_FIX = 'apt-get install nftables (agent filters VM egress with it; bash scripts/setup.sh installs it)'
export const DNSMASQ_FIX = 'apt-get install dnsmasq-base (the filtering DNS for --network allow:DOMAINS; bash scripts/setup.sh installs it)'

/** The upstream the filtering DNS asks: slirp4netns's DNS (the host's resolvers), or AGENT_EGRESS_DNS. */
export function dnsUpstream(env: NodeJS.ProcessEnv = process.env): string {
  return env.AGENT_EGRESS_DNS?.trim() || SLIRP_DNS
}

/** Every address of the host's interfaces, read in agent's (the host's) namespace. */
export function hostAddresses(): string[] {
  const out: string[] = []
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) out.push(a.address.replace(/%.*$/, ''))
  return out
}

const dnsPidFile = (vmDir: string) => join(vmDir, 'dns.pid')

/** Loads the VM's rules into its namespace and starts its filtering DNS when it needs one. Idempotent. */
export async function applyEgress(vmDir: string, netns: string, vm: Pick<VmRecord, 'network' | 'egressAllow' | 'allowHosts'>): Promise<void> {
  if (vm.network === 'none') return
  const upstream = dnsUpstream()
  const ruleset = buildRuleset({vm, hostAddresses: hostAddresses(), dnsUpstream: upstream})
  await run('nsenter', [`--net=${netns}`, 'nft', '-f', '-'], {input: ruleset, what: 'loading the egress rules (nft)', fix: NFT_FIX, kind: 'unavailable', timeoutMs: 30_000})
  const nftCheck = await run('nsenter', [`--net=${netns}`, 'nft', 'list', 'table', 'inet', NFT_TABLE], {what: 'checking the egress rules', timeoutMs: 30_000})
  if (!nftCheck.includes('hook output')) throw new AgentError('internal', 'the egress rules did not load (no output hook in the VM\'s namespace)')
  await run('nsenter', [`--net=${netns}`, 'ip', 'link', 'set', 'lo', 'up'], {what: 'bringing up lo in the VM\'s namespace', timeoutMs: 30_000})
  const {domains} = splitAllow(vm.egressAllow)
  if (vm.network === 'allow' && domains.length) await ensureDns(vmDir, netns, domains, upstream)
}

/** The dnsmasq of this VM when it still runs (its command line names this VM's pid file). */
export function dnsPid(vmDir: string): number | undefined {
  const file = dnsPidFile(vmDir)
  return pidFromFile(file, (cmd) => Boolean(cmd[0]?.endsWith('dnsmasq')) && cmd.includes(`--pid-file=${file}`))
}

async function ensureDns(vmDir: string, netns: string, domains: readonly string[], upstream: string): Promise<void> {
  if (dnsPid(vmDir)) return
  rmSync(dnsPidFile(vmDir), {force: true})
  const logPath = join(vmDir, 'dns.log')
  const list = domains.map((d) => `/${d}`).join('') + '/'
  const args = [
    `--net=${netns}`,
    'dnsmasq',
    '--keep-in-foreground',
    '--conf-file=/dev/null',
    '--no-resolv',
    '--no-hosts',
    '--no-poll',
    '--bind-interfaces',
    '--listen-address=127.0.0.1',
    '--port=53',
    '--user=nobody',
    '--group=nogroup',
    '--conntrack',
    '--cache-size=1000',
    `--pid-file=${dnsPidFile(vmDir)}`,
    `--log-facility=${logPath}`,
    // Only the listed domains (and their subdomains) are forwarded; every other name is refused.
    ...domains.map((d) => `--server=/${d}/${upstream}`),
    `--nftset=${list}4#inet#${NFT_TABLE}#resolved4,6#inet#${NFT_TABLE}#resolved6`,
  ]
  // Its own session, like slirp4netns: it must outlive this agent process and its terminal. Real
  // fds for its output (a pipe would close with us and SIGPIPE it).
  const errPath = join(vmDir, 'dns.err')
  const fd = openSync(errPath, 'w', 0o600)
  let proc
  try {
    proc = start('nsenter', args, {stdin: 'ignore', stdoutFd: fd, stderrFd: fd, detached: true})
  } finally {
    closeSync(fd)
  }
  let exited = false
  let missing = false
  void proc.then((r) => {
    exited = true
    missing = didNotStart(r)
  })
  for (let i = 0; i < 100 && !exited && !dnsPid(vmDir); i++) await sleep(50)
  const pid = dnsPid(vmDir)
  if (!pid) {
    if (proc.pid) await killProcess(proc.pid, {graceMs: 500})
    const out = [errPath, logPath].map(tail).filter(Boolean).join('; ')
    if (missing || /No such file or directory/.test(out)) throw unavailable('dnsmasq is not installed', DNSMASQ_FIX)
    throw new AgentError('internal', `the filtering DNS (dnsmasq) did not start: ${out || 'no output'}`)
  }
  proc.unref()
  logger().debug(`dnsmasq pid ${pid} for ${netns}`)
}

/** Stops the VM's filtering DNS; the rules go with the namespace. */
export async function stopEgress(vmDir: string): Promise<void> {
  const pid = dnsPid(vmDir)
  if (pid) await killProcess(pid, {graceMs: 1_000, isAlive: () => dnsPid(vmDir) !== undefined})
  rmSync(dnsPidFile(vmDir), {force: true})
}

function tail(path: string): string {
  try {
    return lastLines(readFileSync(path, 'utf8'))
  } catch {
    return ''
  }
}
