import type {V1Pod} from '@kubernetes/client-node'
import {describe, expect, it} from 'vitest'
import {podState} from './ops.js'
import {podVerdict} from './pod-wait.js'

const pod = (status: V1Pod['status']): V1Pod => ({metadata: {name: 'agent-python-0123abcd'}, status})
const waiting = (reason: string, message = '') => pod({phase: 'Pending', containerStatuses: [{name: 'sandbox', image: 'i', imageID: '', ready: false, restartCount: 0, state: {waiting: {reason, message}}}]})

describe('podVerdict', () => {
  it('Ready only when Running with the Ready condition True', () => {
    expect(podVerdict(pod({phase: 'Running', conditions: [{type: 'Ready', status: 'True'}]}))).toEqual({state: 'ready'})
    expect(podVerdict(pod({phase: 'Running', conditions: [{type: 'Ready', status: 'False'}]})).state).toBe('waiting')
    expect(podVerdict(pod({phase: 'Pending'})).state).toBe('waiting')
    expect(podVerdict(waiting('ContainerCreating')).state).toBe('waiting')
  })

  it('fails with the pod\'s own reason: image pulls, unschedulable, a container that ended', () => {
    expect(podVerdict(waiting('ErrImagePull', 'not found'))).toEqual({state: 'failed', kind: 'image', reason: 'ErrImagePull', message: 'not found'})
    expect(podVerdict(waiting('ImagePullBackOff', 'Back-off pulling image'))).toMatchObject({state: 'failed', kind: 'image'})
    expect(podVerdict(pod({phase: 'Pending', conditions: [{type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/1 nodes are available: 1 Insufficient cpu.'}]}))).toEqual({
      state: 'failed',
      kind: 'unavailable',
      reason: 'Unschedulable',
      message: '0/1 nodes are available: 1 Insufficient cpu.',
    })
    const ended = podVerdict(pod({phase: 'Failed', containerStatuses: [{name: 'sandbox', image: 'i', imageID: '', ready: false, restartCount: 0, state: {terminated: {exitCode: 127, reason: 'Error'}}}]}))
    expect(ended).toMatchObject({state: 'failed', reason: 'Error'})
    expect((ended as {message: string}).message).toMatch(/exit 127/)
  })

  it('cuts and cleans what the cluster says (control characters, length)', () => {
    const v = podVerdict(waiting('ErrImagePull', `x\u001b[31m${'y'.repeat(5000)}`)) as {message: string}
    expect(v.message.length).toBe(500)
    expect(v.message).not.toMatch(/\u001b/)
  })
})

describe('podState', () => {
  it('maps pods to VM states: no pod is stopped for a stopped VM and missing otherwise', () => {
    const ready = pod({phase: 'Running', conditions: [{type: 'Ready', status: 'True'}]})
    expect(podState(ready, {status: 'running'})).toBe('running')
    expect(podState(undefined, {status: 'stopped'})).toBe('stopped')
    expect(podState(undefined, {status: 'running'})).toBe('missing')
    expect(podState({...ready, metadata: {deletionTimestamp: new Date()}}, {status: 'running'})).toBe('missing')
    expect(podState(waiting('ImagePullBackOff'), {status: 'running'})).toBe('missing')
  })
})
