import {PersistentVolumeClaim, Pod} from 'kubernetes-models/v1'
import {describe, expect, it} from 'vitest'
import {vmRecord} from '../../state/vm-record.js'
import type {K8sSettings} from './config.js'
import {buildPod, buildPvc, KEEPALIVE, podName, pvcName, RECORD_ANNOTATION, selector} from './pod-spec.js'
import {recordFromAnnotation} from './record.js'

const settings: K8sSettings = {
  kubeconfig: '/k',
  namespace: 'sandboxes',
  runtimeClass: 'gvisor',
  imagePullPolicy: 'IfNotPresent',
  imagePrefix: '',
  nodeSelector: {},
  tolerations: [],
  readyTimeoutSec: 60,
}
const vm = vmRecord({id: 'python-0123abcd', language: 'python', image: 'localhost/agent/python:3.13', cpus: 2, memoryMib: 512, diskMib: 2048, persist: true, persistMib: 300})
const input = {vm, settings, namespace: 'sandboxes', stateId: 'abc123', env: {LANG: 'C.UTF-8'}}

/** Schema errors of an object, from the Kubernetes OpenAPI schemas (kubernetes-models). */
function schemaErrors(model: {validate(): void}): string | undefined {
  try {
    model.validate()
    return undefined
  } catch (err) {
    return (err as Error).message
  }
}

describe('buildPod', () => {
  it('is a valid Pod by the Kubernetes schema, and the validator does catch a broken one', () => {
    expect(schemaErrors(new Pod(buildPod(input) as never))).toBeUndefined()
    const broken = buildPod(input)
    broken.spec!.containers[0]!.resources!.limits!.cpu = 'two cores'
    expect(schemaErrors(new Pod(broken as never))).toMatch(/quantity/)
  })

  it('locks the pod down: no token, no service links, no host namespaces, no capabilities, no escalation, RuntimeDefault seccomp', () => {
    const p = buildPod(input)
    const s = p.spec!
    expect(s.automountServiceAccountToken).toBe(false)
    expect(s.enableServiceLinks).toBe(false)
    expect([s.hostNetwork, s.hostPID, s.hostIPC]).toEqual([false, false, false])
    expect(s.runtimeClassName).toBe('gvisor')
    expect(s.restartPolicy).toBe('Never')
    expect(s.securityContext!.seccompProfile).toEqual({type: 'RuntimeDefault'})
    const c = s.containers[0]!
    expect(s.containers).toHaveLength(1)
    expect(c.name).toBe('sandbox')
    expect(c.securityContext).toMatchObject({allowPrivilegeEscalation: false, privileged: false, capabilities: {drop: ['ALL']}, seccompProfile: {type: 'RuntimeDefault'}})
    expect(c.securityContext!.capabilities!.add).toBeUndefined()
    expect(c.command).toEqual(KEEPALIVE)
    expect(s.volumes!.some((v) => 'hostPath' in v)).toBe(false)
  })

  it('takes requests = limits from --cpu, --mem and --disk (ephemeral-storage)', () => {
    const c = buildPod(input).spec!.containers[0]!
    const want = {cpu: '2', memory: '512Mi', 'ephemeral-storage': '2048Mi'}
    expect(c.resources!.limits).toEqual(want)
    expect(c.resources!.requests).toEqual(want)
  })

  it('labels the pod with agent, the state dir and the VM, and keeps the VM record on it', () => {
    const p = buildPod(input)
    expect(p.metadata!.name).toBe(podName(vm.id))
    expect(p.metadata!.labels).toEqual({'app.kubernetes.io/managed-by': 'agent', 'agent.dev/state': 'abc123', 'agent.dev/vm': vm.id})
    expect(selector('abc123', vm.id)).toBe(`app.kubernetes.io/managed-by=agent,agent.dev/state=abc123,agent.dev/vm=${vm.id}`)
    const back = recordFromAnnotation(p.metadata!.annotations![RECORD_ANNOTATION], vm.id, 'running', 'x')
    expect(back).toMatchObject({id: vm.id, language: 'python', image: vm.image, cpus: 2, memoryMib: 512, diskMib: 2048, persist: true, persistMib: 300, launcher: 'kubernetes', status: 'running'})
  })

  it('mounts /persist from the VM\'s claim only with --persist', () => {
    const withP = buildPod(input).spec!
    expect(withP.volumes!.find((v) => v.name === 'persist')!.persistentVolumeClaim!.claimName).toBe(pvcName(vm.id))
    const without = buildPod({...input, vm: {...vm, persist: false}}).spec!
    expect(without.volumes!.map((v) => v.name)).toEqual(['in', 'out', 'tmp'])
    expect(without.containers[0]!.volumeMounts!.map((m) => m.mountPath)).toEqual(['/in', '/out', '/tmp'])
  })

  it('applies the settings: no runtime class for "none", the image prefix, pull policy, node selector, tolerations, a non-root uid', () => {
    const s: K8sSettings = {
      ...settings,
      runtimeClass: null,
      imagePrefix: 'registry.example.com/',
      imagePullPolicy: 'Always',
      nodeSelector: {'sandbox.example.com/pool': 'gvisor'},
      tolerations: [{key: 'sandbox', operator: 'Exists', effect: 'NoSchedule'}],
      runAsUser: 1000,
    }
    const p = buildPod({...input, settings: s})
    expect(schemaErrors(new Pod(p as never))).toBeUndefined()
    expect('runtimeClassName' in p.spec!).toBe(false)
    expect(p.spec!.containers[0]!.image).toBe('registry.example.com/localhost/agent/python:3.13')
    expect(p.spec!.containers[0]!.imagePullPolicy).toBe('Always')
    expect(p.spec!.nodeSelector).toEqual({'sandbox.example.com/pool': 'gvisor'})
    expect(p.spec!.tolerations).toEqual([{key: 'sandbox', operator: 'Exists', effect: 'NoSchedule'}])
    expect(p.spec!.securityContext).toMatchObject({runAsNonRoot: true, runAsUser: 1000})
    expect(p.spec!.containers[0]!.securityContext!.runAsNonRoot).toBe(true)
  })
})

describe('buildPvc', () => {
  it('is a valid, labelled claim of the --persist-size', () => {
    const c = buildPvc(input)
    expect(schemaErrors(new PersistentVolumeClaim(c as never))).toBeUndefined()
    expect(c.spec!.resources!.requests).toEqual({storage: '300Mi'})
    expect(c.metadata!.labels!['agent.dev/vm']).toBe(vm.id)
    expect(buildPvc({...input, settings: {...settings, storageClass: 'fast'}}).spec!.storageClassName).toBe('fast')
  })
})

describe('recordFromAnnotation', () => {
  it('refuses what does not check out: another id, bad JSON, bad limits, control characters', () => {
    const good = buildPod(input).metadata!.annotations![RECORD_ANNOTATION]!
    expect(recordFromAnnotation(good, 'python-ffffffff', 'running', null)).toBeUndefined()
    expect(recordFromAnnotation('{not json', vm.id, 'running', null)).toBeUndefined()
    expect(recordFromAnnotation(good.replace('"cpus":2', '"cpus":-1'), vm.id, 'running', null)).toBeUndefined()
    expect(recordFromAnnotation(good.replace('"language":"python"', '"language":"py\\nthon"'), vm.id, 'running', null)).toBeUndefined()
    expect(recordFromAnnotation(good.replace('"network":"none"', '"network":"everything"'), vm.id, 'running', null)).toBeUndefined()
    expect(recordFromAnnotation(42, vm.id, 'running', null)).toBeUndefined()
  })
})
