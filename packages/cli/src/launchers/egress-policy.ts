/**
 * The egress policy of a VM with network, pure: parsing what the user asked for, and the nftables
 * ruleset that enforces it inside the VM's own network namespace (launchers/egress.ts loads it).
 *
 *  - allow_all: the public internet only. Loopback, RFC 1918, link-local (169.254.169.254, the
 *    cloud metadata address, included), CGNAT 100.64/10, multicast, reserved ranges, IPv6 ULA,
 *    link-local and multicast, and every address of the host itself are refused.
 *  - allow:LIST: only the CIDRs and domain names listed. A listed CIDR may name a private range (it
 *    is the user's explicit choice); an address a listed *domain* resolves to must still be public
 *    (a domain cannot rebind the VM onto the host or the metadata service).
 *  - --allow-host ADDR[:PORT] holes come first, in both modes.
 *
 * The filter sits on the OUTPUT hook of the VM's namespace: every packet a guest socket sends
 * (runc: the guest's own sockets; gVisor: the sentry's host sockets, --network=host in that
 * namespace) passes it before slirp4netns turns it into a host connection. The guest's own
 * loopback (lo) is its own and stays open.
 */
import {isIP, isIPv4} from 'node:net'
import {usageError} from '../errors.js'
import type {NetworkMode, VmRecord} from '../state/vm-record.js'

/** slirp4netns's fixed addresses inside the namespace. */
export const SLIRP_GATEWAY = '10.0.2.2'
export const SLIRP_DNS = '10.0.2.3'
export const NFT_TABLE = 'agent_egress'
/** The conntrack mark given to the guest's queries to the filtering DNS; dnsmasq --conntrack copies it onto its upstream queries. */
export const DNS_MARK = 0x4147

/** Refused under every policy unless a hole or an explicit allow-list CIDR opens them. */
export const BLOCKED_V4 = [
  '0.0.0.0/8', // "this network"
  '10.0.0.0/8', // RFC 1918 (slirp's 10.0.2.0/24, i.e. its gateway = the host, is in here)
  '100.64.0.0/10', // CGNAT
  '127.0.0.0/8', // loopback
  '169.254.0.0/16', // link-local, cloud metadata 169.254.169.254
  '172.16.0.0/12', // RFC 1918
  '192.0.0.0/24', // IETF protocol assignments
  '192.168.0.0/16', // RFC 1918
  '198.18.0.0/15', // benchmarking
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, broadcast
] as const
export const BLOCKED_V6 = [
  '::/127', // unspecified, loopback
  '::ffff:0:0/96', // IPv4-mapped: the v4 rules must not be dodged through a v6 socket
  'fc00::/7', // unique local
  'fe80::/10', // link-local
  'fec0::/10', // old site-local
  'ff00::/8', // multicast
] as const

export const MAX_ALLOW_ITEMS = 64
export const MAX_HOLES = 32

export type Cidr = {family: 4 | 6; cidr: string}
export interface AllowList {
  cidrs: Cidr[]
  domains: string[]
}
export interface Hole extends Cidr {
  port?: number
}

/** `--network` as given: none, allow_all, or allow:LIST. */
export function parseNetwork(value: string): {network: NetworkMode; egressAllow: string[] | null} {
  const v = value.trim()
  if (v === 'none' || v === 'allow_all') return {network: v, egressAllow: null}
  if (v.startsWith('allow:')) {
    const items = v.slice('allow:'.length).split(',').map((s) => s.trim()).filter(Boolean)
    if (!items.length) throw usageError('--network allow: needs a list: allow:pypi.org,files.pythonhosted.org,10.1.2.0/24')
    return {network: 'allow', egressAllow: normalizeAllow(items)}
  }
  throw usageError(`--network takes none, allow_all or allow:LIST (got ${JSON.stringify(value)})`, 'e.g. --network allow:pypi.org,10.1.2.0/24')
}

/** Checks and normalizes an allow list (CIDRs to their network form, domains lower-cased). */
export function normalizeAllow(items: readonly string[]): string[] {
  if (items.length > MAX_ALLOW_ITEMS) throw usageError(`an allow list takes at most ${MAX_ALLOW_ITEMS} entries (got ${items.length})`)
  const out: string[] = []
  for (const raw of items) {
    const item = raw.trim().toLowerCase()
    const cidr = parseCidr(item)
    const norm = cidr ? cidr.cidr : checkDomain(item)
    if (!out.includes(norm)) out.push(norm)
  }
  return out
}

export function splitAllow(items: readonly string[] | null): AllowList {
  const cidrs: Cidr[] = []
  const domains: string[] = []
  for (const i of items ?? []) {
    const c = parseCidr(i)
    if (c) cidrs.push(c)
    else domains.push(i)
  }
  return {cidrs, domains}
}

const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/

/** A domain name (its subdomains are allowed with it); no wildcards, no IP-looking names. */
export function checkDomain(s: string): string {
  const d = s.replace(/\.$/, '')
  const labels = d.split('.')
  const ok = d.length > 0 && d.length <= 253 && labels.length >= 2 && labels.every((l) => LABEL.test(l)) && !/^\d+$/.test(labels.at(-1)!)
  if (!ok) throw usageError(`not a CIDR, IP address or domain name: ${JSON.stringify(s)}`, 'list addresses as 10.1.2.0/24 or 203.0.113.7, and names as pypi.org (subdomains are included; no wildcards)')
  return d
}

/** An IP address or CIDR in network form (host bits cleared), or undefined when it is neither. */
export function parseCidr(s: string): Cidr | undefined {
  const [addr, bitsText, ...rest] = s.split('/')
  if (rest.length || !addr) return undefined
  const family = isIP(addr)
  if (family !== 4 && family !== 6) return undefined
  const max = family === 4 ? 32 : 128
  let bits = max
  if (bitsText !== undefined) {
    if (!/^\d{1,3}$/.test(bitsText) || Number(bitsText) > max) throw usageError(`bad prefix length in ${JSON.stringify(s)} (0-${max})`)
    bits = Number(bitsText)
  }
  const net = family === 4 ? v4ToString(v4ToInt(addr) & maskV4(bits)) : v6ToString(v6ToBig(addr) & maskV6(bits))
  return {family, cidr: bits === max ? net : `${net}/${bits}`}
}

/** `--allow-host ADDR[/BITS][:PORT]`, IPv6 as `[ADDR]:PORT`. The host's loopback stays closed (slirp4netns never reaches it). */
export function parseHole(s: string): Hole {
  const t = s.trim()
  let addr = t
  let port: number | undefined
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(t)
  if (v6) {
    addr = v6[1]!
    if (v6[2] !== undefined) port = checkPort(v6[2], s)
  } else if ((t.match(/:/g) ?? []).length === 1) {
    const i = t.lastIndexOf(':')
    addr = t.slice(0, i)
    port = checkPort(t.slice(i + 1), s)
  }
  const c = parseCidr(addr.toLowerCase())
  if (!c) throw usageError(`--allow-host takes ADDR, ADDR:PORT, CIDR or [IPv6]:PORT (got ${JSON.stringify(s)})`, 'give an IP address; to allow a domain name use --network allow:NAME')
  const first = c.cidr.split('/')[0]!
  if ((c.family === 4 && (first.startsWith('127.') || first === SLIRP_GATEWAY)) || (c.family === 6 && first === '::1')) {
    throw usageError(`--allow-host ${s}: a VM never reaches the host's loopback`, 'bind the host service to a host address (the host\'s interface address) and allow that one')
  }
  return {...c, port}
}

export function holeText(h: Hole): string {
  const a = h.family === 6 && h.port !== undefined ? `[${h.cidr}]` : h.cidr
  return h.port === undefined ? a : `${a}:${h.port}`
}

export function normalizeHoles(items: readonly string[] | undefined): string[] | null {
  if (!items?.length) return null
  if (items.length > MAX_HOLES) throw usageError(`at most ${MAX_HOLES} --allow-host holes (got ${items.length})`)
  return [...new Set(items.map((i) => holeText(parseHole(i))))]
}

function checkPort(p: string, whole: string): number {
  const n = Number(p)
  if (!/^\d{1,5}$/.test(p) || n < 1 || n > 65535) throw usageError(`bad port in --allow-host ${JSON.stringify(whole)} (1-65535)`)
  return n
}

/** Checks that the policy fields fit the mode (a service asks before anything is made). */
export function checkPolicy(vm: Pick<VmRecord, 'network' | 'egressAllow' | 'allowHosts'>): void {
  if (vm.network === 'none' && vm.allowHosts?.length) throw usageError('--allow-host needs a network: add --network allow_all or --network allow:LIST')
  if (vm.network === 'allow' && !vm.egressAllow?.length) throw usageError('--network allow: needs a list')
}

/** What a guest's /etc/resolv.conf names: slirp's DNS, the filtering DNS in the VM's namespace, or none. */
export function guestResolver(vm: Pick<VmRecord, 'network' | 'egressAllow'>): string | undefined {
  if (vm.network === 'allow_all') return SLIRP_DNS
  if (vm.network === 'allow' && splitAllow(vm.egressAllow).domains.length) return '127.0.0.1'
  return undefined
}

export interface RulesetInput {
  vm: Pick<VmRecord, 'network' | 'egressAllow' | 'allowHosts'>
  /** Every address of the host, refused like the private ranges. */
  hostAddresses: readonly string[]
  /** The server the filtering DNS asks (allow lists with domains). */
  dnsUpstream: string
}

/**
 * The nftables script: deletes and re-creates the table in one transaction, so applying it again
 * (vm start) never leaves a window without rules.
 */
export function buildRuleset(input: RulesetInput): string {
  const {vm} = input
  const allow = splitAllow(vm.egressAllow)
  const holes = (vm.allowHosts ?? []).map(parseHole)
  const host = input.hostAddresses.map((a) => parseCidr(a.toLowerCase())).filter((c): c is Cidr => Boolean(c))
  const blocked4 = [...BLOCKED_V4, ...host.filter((c) => c.family === 4).map((c) => c.cidr)]
  const blocked6 = [...BLOCKED_V6, ...host.filter((c) => c.family === 6).map((c) => c.cidr)]
  const set = (name: string, family: 4 | 6, elements: readonly string[]) =>
    `  set ${name} {\n    type ${family === 4 ? 'ipv4_addr' : 'ipv6_addr'}\n    flags interval\n    auto-merge\n${elements.length ? `    elements = { ${elements.join(', ')} }\n` : ''}  }`
  const dnsFilter = vm.network === 'allow' && allow.domains.length > 0
  const upstreamFamily = isIPv4(input.dnsUpstream) ? 'ip' : 'ip6'
  const rules: string[] = []
  if (dnsFilter) rules.push(`oif "lo" meta l4proto { tcp, udp } th dport 53 ct mark set ${DNS_MARK}`)
  rules.push('oif "lo" accept')
  if (vm.network === 'allow_all') rules.push(`ip daddr ${SLIRP_DNS} meta l4proto { tcp, udp } th dport 53 accept`)
  if (dnsFilter) rules.push(`meta mark ${DNS_MARK} ${upstreamFamily} daddr ${input.dnsUpstream} meta l4proto { tcp, udp } th dport 53 accept`)
  for (const h of holes) {
    const match = `${h.family === 4 ? 'ip' : 'ip6'} daddr ${h.cidr}`
    rules.push(h.port === undefined ? `${match} accept` : `${match} meta l4proto { tcp, udp } th dport ${h.port} accept`)
  }
  if (vm.network === 'allow') rules.push('ip daddr @listed4 accept', 'ip6 daddr @listed6 accept')
  rules.push('ip daddr @blocked4 goto refuse', 'ip6 daddr @blocked6 goto refuse')
  if (vm.network === 'allow') rules.push('ip daddr @resolved4 accept', 'ip6 daddr @resolved6 accept', 'goto refuse')
  return [
    `table inet ${NFT_TABLE} {}`,
    `delete table inet ${NFT_TABLE}`,
    `table inet ${NFT_TABLE} {`,
    set('blocked4', 4, blocked4),
    set('blocked6', 6, blocked6),
    set('listed4', 4, allow.cidrs.filter((c) => c.family === 4).map((c) => c.cidr)),
    set('listed6', 6, allow.cidrs.filter((c) => c.family === 6).map((c) => c.cidr)),
    // Filled by the filtering DNS (dnsmasq --nftset) with what the allowed domains resolve to.
    set('resolved4', 4, []),
    set('resolved6', 6, []),
    '  chain refuse {',
    // An immediate error in the guest (ECONNREFUSED / EHOSTUNREACH), not a hang until a timeout.
    '    meta l4proto tcp reject with tcp reset',
    '    reject with icmpx admin-prohibited',
    '  }',
    '  chain output {',
    '    type filter hook output priority filter; policy accept;',
    ...rules.map((r) => `    ${r}`),
    '  }',
    '}',
    '',
  ].join('\n')
}

// ---------------------------------------------------------------- address arithmetic

function v4ToInt(a: string): number {
  return a.split('.').reduce((n, o) => ((n << 8) | Number(o)) >>> 0, 0)
}
function v4ToString(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.')
}
function maskV4(bits: number): number {
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0
}

function v6ToBig(a: string): bigint {
  let s = a
  // A trailing dotted quad (::ffff:1.2.3.4).
  const q = /(\d+\.\d+\.\d+\.\d+)$/.exec(s)
  if (q) {
    const n = v4ToInt(q[1]!)
    s = `${s.slice(0, -q[1]!.length)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`
  }
  const [head, tail] = s.split('::')
  const h = head ? head.split(':') : []
  const t = tail !== undefined && tail !== '' ? tail.split(':') : []
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t]
  return groups.reduce((n, g) => (n << 16n) | BigInt(parseInt(g || '0', 16)), 0n)
}
function v6ToString(n: bigint): string {
  const g = Array.from({length: 8}, (_, i) => Number((n >> BigInt(112 - 16 * i)) & 0xffffn))
  // Longest run of zero groups becomes '::' (RFC 5952).
  let best = -1
  let bestLen = 1
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && g[j] === 0) j++
    if (j - i > bestLen) {
      best = i
      bestLen = j - i
    }
    i = j
  }
  const hex = g.map((x) => x.toString(16))
  if (best < 0) return hex.join(':')
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`
}
function maskV6(bits: number): bigint {
  return bits === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - bits)) - 1n)
}
