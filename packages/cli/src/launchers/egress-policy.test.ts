import {describe, expect, it} from 'vitest'
import {AgentError} from '../errors.js'
import {buildRuleset, guestResolver, normalizeHoles, parseCidr, parseHole, parseNetwork} from './egress-policy.js'

const usage = (f: () => unknown) => {
  try {
    f()
  } catch (err) {
    expect(err).toBeInstanceOf(AgentError)
    expect((err as AgentError).kind).toBe('usage')
    return (err as AgentError).message
  }
  throw new Error('expected a usage error')
}

describe('egress policy', () => {
  it('parses --network none, allow_all and allow:LIST, normalizing CIDRs and names', () => {
    expect(parseNetwork('none')).toEqual({network: 'none', egressAllow: null})
    expect(parseNetwork('allow_all')).toEqual({network: 'allow_all', egressAllow: null})
    expect(parseNetwork('allow:PyPI.org, files.pythonhosted.org,10.1.2.9/24,203.0.113.7,2001:DB8::1/32,pypi.org')).toEqual({
      network: 'allow',
      egressAllow: ['pypi.org', 'files.pythonhosted.org', '10.1.2.0/24', '203.0.113.7', '2001:db8::/32'],
    })
    expect(usage(() => parseNetwork('allow:'))).toMatch(/needs a list/)
    expect(usage(() => parseNetwork('all'))).toMatch(/none, allow_all or allow:LIST/)
    for (const bad of ['*.pypi.org', 'localhost', 'a b.org', '10.0.0.0/33', 'pypi.org/simple', '1.2.3.999', '-x.org', 'x.123']) {
      expect(usage(() => parseNetwork(`allow:${bad}`)), bad).toBeTruthy()
    }
  })

  it('parses --allow-host holes and keeps the host loopback closed', () => {
    expect(parseHole('192.168.1.20:5432')).toEqual({family: 4, cidr: '192.168.1.20', port: 5432})
    expect(parseHole('10.9.8.7')).toEqual({family: 4, cidr: '10.9.8.7', port: undefined})
    expect(parseHole('10.9.8.7/16:443')).toEqual({family: 4, cidr: '10.9.0.0/16', port: 443})
    expect(parseHole('[fd00::1]:80')).toEqual({family: 6, cidr: 'fd00::1', port: 80})
    expect(parseHole('fd00::1')).toEqual({family: 6, cidr: 'fd00::1', port: undefined})
    expect(normalizeHoles(['[fd00::1]:80', '10.0.0.1', '10.0.0.1'])).toEqual(['[fd00::1]:80', '10.0.0.1'])
    expect(normalizeHoles([])).toBeNull()
    for (const bad of ['127.0.0.1:80', '10.0.2.2:8080', '::1', 'db.internal:5432', '10.0.0.1:0', '10.0.0.1:70000', '[fd00::1]:x']) {
      expect(usage(() => parseHole(bad)), bad).toBeTruthy()
    }
  })

  it('does CIDR arithmetic in both families', () => {
    expect(parseCidr('192.168.77.200/20')?.cidr).toBe('192.168.64.0/20')
    expect(parseCidr('0.0.0.0/0')?.cidr).toBe('0.0.0.0/0')
    expect(parseCidr('fe80::1:2:3/64')?.cidr).toBe('fe80::/64')
    expect(parseCidr('::ffff:10.1.2.3')?.cidr).toBe('::ffff:a01:203')
    expect(parseCidr('2001:db8:0:0:1:0:0:1')?.cidr).toBe('2001:db8::1:0:0:1')
    expect(parseCidr('pypi.org')).toBeUndefined()
  })

  it('allow_all: loopback stays the guest\'s own, slirp DNS is open, private, metadata and host addresses are refused', () => {
    const r = buildRuleset({vm: {network: 'allow_all', egressAllow: null, allowHosts: ['192.168.1.20:5432']}, hostAddresses: ['192.0.2.2', 'fe80::1%eth0', '127.0.0.1'], dnsUpstream: '10.0.2.3'})
    expect(r).toMatch(/^table inet agent_egress \{\}\ndelete table inet agent_egress\n/)
    for (const cidr of ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16', '100.64.0.0/10', '127.0.0.0/8', '224.0.0.0/4', '192.0.2.2', 'fc00::/7', 'fe80::/10', 'fe80::1']) {
      expect(r, cidr).toContain(cidr)
    }
    const chain = r.slice(r.indexOf('chain output'))
    const order = ['oif "lo" accept', 'ip daddr 10.0.2.3 meta l4proto { tcp, udp } th dport 53 accept', 'ip daddr 192.168.1.20 meta l4proto { tcp, udp } th dport 5432 accept', 'ip daddr @blocked4 goto refuse']
    expect(order.map((o) => chain.indexOf(o))).toEqual([...order.map((o) => chain.indexOf(o))].sort((a, b) => a - b))
    expect(order.every((o) => chain.includes(o))).toBe(true)
    expect(chain).not.toContain('@resolved4 accept')
    expect(chain).not.toContain('ct mark')
    expect(guestResolver({network: 'allow_all', egressAllow: null})).toBe('10.0.2.3')
  })

  it('allow:LIST: listed CIDRs first, then the private ranges, then what listed domains resolve to, then nothing', () => {
    const r = buildRuleset({vm: {network: 'allow', egressAllow: ['pypi.org', '10.1.2.0/24'], allowHosts: null}, hostAddresses: [], dnsUpstream: '10.0.2.3'})
    const chain = r.slice(r.indexOf('chain output'))
    const order = ['ct mark set 16711', 'oif "lo" accept', 'meta mark 16711 ip daddr 10.0.2.3', 'ip daddr @listed4 accept', 'ip daddr @blocked4 goto refuse', 'ip daddr @resolved4 accept', '\n    goto refuse\n']
    const at = order.map((o) => chain.indexOf(o))
    expect(at.every((i) => i >= 0), JSON.stringify(at)).toBe(true)
    expect(at).toEqual([...at].sort((a, b) => a - b))
    // The guest itself may not ask slirp's DNS: only marked (dnsmasq's) queries pass.
    expect(chain).not.toMatch(/^\s+ip daddr 10\.0\.2\.3 /m)
    expect(r).toMatch(/set listed4 \{[^}]*elements = \{ 10\.1\.2\.0\/24 \}/)
    expect(guestResolver({network: 'allow', egressAllow: ['pypi.org']})).toBe('127.0.0.1')
    expect(guestResolver({network: 'allow', egressAllow: ['10.1.2.0/24']})).toBeUndefined()
    const cidrOnly = buildRuleset({vm: {network: 'allow', egressAllow: ['10.1.2.0/24'], allowHosts: null}, hostAddresses: [], dnsUpstream: '10.0.2.3'})
    expect(cidrOnly).not.toContain('ct mark')
    expect(cidrOnly).not.toContain('meta mark')
  })
})
