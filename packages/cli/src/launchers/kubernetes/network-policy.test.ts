import {NetworkPolicy} from 'kubernetes-models/networking.k8s.io/v1'
import {describe, expect, it} from 'vitest'
import {AgentError} from '../../errors.js'
import {BLOCKED_V4} from '../egress-policy.js'
import {buildPolicies} from './network-policy.js'

const id = 'python-0123abcd'
const base = {namespace: 'sandboxes', stateId: 'abc123'}
const valid = (p: unknown) => {
  new NetworkPolicy(p as never).validate()
  return true
}

describe('buildPolicies', () => {
  it('none: one policy denying all ingress and all egress of this VM\'s pod, nothing else (not even DNS)', () => {
    const ps = buildPolicies({...base, vm: {id, network: 'none', egressAllow: null, allowHosts: null}, record: '{}'})
    expect(ps).toHaveLength(1)
    const p = ps[0]!
    expect(valid(p)).toBe(true)
    expect(p.spec!.policyTypes).toEqual(['Ingress', 'Egress'])
    expect(p.spec!.egress).toEqual([])
    expect(p.spec!.ingress).toEqual([])
    expect(p.spec!.podSelector.matchLabels).toEqual({'agent.dev/state': 'abc123', 'agent.dev/vm': id})
    expect(p.metadata!.labels!['app.kubernetes.io/managed-by']).toBe('agent')
    expect(p.metadata!.annotations!['agent.dev/record']).toBe('{}')
  })

  it('none ignores --allow-host holes: no egress at all', () => {
    expect(buildPolicies({...base, vm: {id, network: 'none', egressAllow: null, allowHosts: ['203.0.113.7:443']}})).toHaveLength(1)
  })

  it('allow_all: the public internet only (private, link-local/metadata and loopback ranges excepted) and cluster DNS', () => {
    const [, allow] = buildPolicies({...base, vm: {id, network: 'allow_all', egressAllow: null, allowHosts: null}})
    expect(valid(allow)).toBe(true)
    const rules = allow!.spec!.egress!
    const v4 = rules[0]!.to!.find((t) => t.ipBlock?.cidr === '0.0.0.0/0')!.ipBlock!
    for (const c of ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16', '127.0.0.0/8']) expect(v4.except).toContain(c)
    expect(v4.except).toEqual([...BLOCKED_V4])
    expect(rules[0]!.to!.find((t) => t.ipBlock?.cidr === '::/0')!.ipBlock!.except).toContain('fe80::/10')
    expect(rules.at(-1)!.ports).toEqual([{protocol: 'UDP', port: 53}, {protocol: 'TCP', port: 53}])
  })

  it('allow:CIDRs and --allow-host holes become ipBlocks (a bare address as /32), ports kept', () => {
    const [, allow] = buildPolicies({...base, vm: {id, network: 'allow', egressAllow: ['10.1.2.0/24', '203.0.113.9'], allowHosts: ['192.168.5.5:8080']}})
    expect(valid(allow)).toBe(true)
    const rules = allow!.spec!.egress!
    expect(rules[0]!.to!.map((t) => t.ipBlock!.cidr)).toEqual(['10.1.2.0/24', '203.0.113.9/32'])
    expect(rules[1]).toEqual({to: [{ipBlock: {cidr: '192.168.5.5/32'}}], ports: [{protocol: 'TCP', port: 8080}, {protocol: 'UDP', port: 8080}]})
  })

  it('refuses domain names with a usage error instead of widening the policy', () => {
    let err: unknown
    try {
      buildPolicies({...base, vm: {id, network: 'allow', egressAllow: ['pypi.org', '10.0.0.0/8'], allowHosts: null}})
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(AgentError)
    expect((err as AgentError).kind).toBe('usage')
    expect((err as AgentError).message).toMatch(/domain names \(pypi\.org\)/)
  })
})
