/**
 * --network as NetworkPolicies selecting one VM's pod. Every VM gets a policy that denies all
 * ingress and all egress; a second one, for allow_all and allow:LIST, opens what the mode allows.
 * Policies are additive (a connection is allowed if any policy allows it), so the deny-all is the
 * floor and the allow policy the holes.
 *
 *  - none: nothing but the deny-all (not even DNS).
 *  - allow_all: the public internet only: 0.0.0.0/0 and ::/0 except the private, link-local
 *    (cloud metadata), loopback and multicast ranges agent blocks everywhere
 *    (egress-policy.ts), plus DNS to the cluster's DNS pods.
 *  - allow:LIST: the listed CIDRs (and DNS). Domain names cannot be said in a NetworkPolicy, so
 *    they are refused with a clear error rather than silently widened.
 *  - --allow-host holes: their CIDR (and port) on top.
 *
 * Enforcement is the CNI's job: on a cluster whose network plugin does not implement
 * NetworkPolicy (flannel alone, for one) these objects exist and do nothing (docs/scale-out.md).
 */
import type {V1NetworkPolicy, V1NetworkPolicyEgressRule, V1NetworkPolicyPeer} from '@kubernetes/client-node'
import {usageError} from '../../errors.js'
import type {VmRecord} from '../../state/vm-record.js'
import {BLOCKED_V4, BLOCKED_V6, parseHole, splitAllow} from '../egress-policy.js'
import {RECORD_ANNOTATION, STATE_LABEL, VM_LABEL, vmLabels} from './pod-spec.js'

export const denyName = (id: string) => `agent-${id}-deny`
export const allowName = (id: string) => `agent-${id}-egress`

/** The cluster DNS: kube-dns/CoreDNS pods in kube-system (the k8s-app=kube-dns label both carry). */
const DNS_PEER: V1NetworkPolicyPeer = {
  namespaceSelector: {matchLabels: {'kubernetes.io/metadata.name': 'kube-system'}},
  podSelector: {matchLabels: {'k8s-app': 'kube-dns'}},
}
const DNS_RULE: V1NetworkPolicyEgressRule = {
  to: [DNS_PEER],
  ports: [
    {protocol: 'UDP', port: 53},
    {protocol: 'TCP', port: 53},
  ],
}

/** The ranges agent blocks everywhere, as the `except` of an all-addresses ipBlock. */
const EXCEPT_V4 = [...BLOCKED_V4]
const EXCEPT_V6 = [...BLOCKED_V6]
/** A bare address as the CIDR an ipBlock needs. */
const asCidr = (c: {family: 4 | 6; cidr: string}) => (c.cidr.includes('/') ? c.cidr : `${c.cidr}/${c.family === 4 ? 32 : 128}`)

export interface PolicyInput {
  vm: Pick<VmRecord, 'id' | 'network' | 'egressAllow' | 'allowHosts'>
  namespace: string
  stateId: string
  /** The VM's record (pod-spec.ts recordAnnotation), kept on the deny-all policy too: it outlives the pod of a stopped VM. */
  record?: string
}

function policy(name: string, p: PolicyInput, spec: V1NetworkPolicy['spec'], record?: string): V1NetworkPolicy {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: {name, namespace: p.namespace, labels: vmLabels(p.stateId, p.vm.id), ...(record ? {annotations: {[RECORD_ANNOTATION]: record}} : {})},
    spec,
  }
}

/** The policies for a VM's network mode. Throws a usage error for what a NetworkPolicy cannot express. */
export function buildPolicies(p: PolicyInput): V1NetworkPolicy[] {
  const podSelector = {matchLabels: {[STATE_LABEL]: p.stateId, [VM_LABEL]: p.vm.id}}
  const out = [policy(denyName(p.vm.id), p, {podSelector, policyTypes: ['Ingress', 'Egress'], ingress: [], egress: []}, p.record)]
  const rules: V1NetworkPolicyEgressRule[] = []
  if (p.vm.network === 'allow_all') {
    rules.push({to: [{ipBlock: {cidr: '0.0.0.0/0', except: EXCEPT_V4}}, {ipBlock: {cidr: '::/0', except: EXCEPT_V6}}]})
  } else if (p.vm.network === 'allow') {
    const {cidrs, domains} = splitAllow(p.vm.egressAllow)
    if (domains.length) {
      throw usageError(
        `the kubernetes launcher cannot allow domain names (${domains.join(', ')}): a NetworkPolicy only names addresses`,
        'list the addresses as CIDRs (--network allow:203.0.113.0/24), or use --network allow_all',
      )
    }
    if (cidrs.length) rules.push({to: cidrs.map((c) => ({ipBlock: {cidr: asCidr(c)}}))})
  }
  for (const text of p.vm.network === 'none' ? [] : (p.vm.allowHosts ?? [])) {
    const h = parseHole(text)
    rules.push({to: [{ipBlock: {cidr: asCidr(h)}}], ...(h.port === undefined ? {} : {ports: [{protocol: 'TCP', port: h.port}, {protocol: 'UDP', port: h.port}]})})
  }
  if (rules.length) {
    rules.push(DNS_RULE)
    out.push(policy(allowName(p.vm.id), p, {podSelector, policyTypes: ['Egress'], egress: rules}))
  }
  return out
}
