import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterEach, beforeEach, describe, expect, it} from 'vitest'
import {StatePaths} from '../../config/state-dir.js'
import {AgentError} from '../../errors.js'
import {loadPlacement, resolveSettings, savePlacement, stateId, usedPlaces} from './config.js'

let root: string
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'k8s-config-'))
})
afterEach(() => rmSync(root, {recursive: true, force: true}))

const writeConfig = (k: unknown) => writeFileSync(join(root, 'config.json'), JSON.stringify({kubernetes: k}))
const usage = (fn: () => unknown): string => {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(AgentError)
    expect((err as AgentError).kind).toBe('usage')
    return (err as AgentError).message
  }
  throw new Error('no error')
}

describe('resolveSettings', () => {
  it('defaults: gvisor, IfNotPresent, the kubeconfig from KUBECONFIG, namespace left to the context', () => {
    const s = resolveSettings(root, {KUBECONFIG: '/etc/kc:/other'})
    expect(s).toMatchObject({kubeconfig: '/etc/kc', runtimeClass: 'gvisor', imagePullPolicy: 'IfNotPresent', imagePrefix: '', nodeSelector: {}, tolerations: []})
    expect(s.namespace).toBeUndefined()
    expect(s.context).toBeUndefined()
  })

  it('flag over AGENT_K8S_* over config.json', () => {
    writeConfig({namespace: 'from-file', runtimeClass: 'kata', context: 'file-ctx', imagePullPolicy: 'Never', kubeconfig: '/file/kc'})
    expect(resolveSettings(root, {})).toMatchObject({namespace: 'from-file', runtimeClass: 'kata', context: 'file-ctx', imagePullPolicy: 'Never', kubeconfig: '/file/kc'})
    const env = {AGENT_K8S_NAMESPACE: 'from-env', AGENT_K8S_RUNTIME_CLASS: 'none', AGENT_K8S_KUBECONFIG: '/env/kc'}
    expect(resolveSettings(root, env)).toMatchObject({namespace: 'from-env', runtimeClass: null, kubeconfig: '/env/kc'})
    expect(resolveSettings(root, env, {'k8s-namespace': 'from-flag', 'k8s-runtime-class': 'gvisor'})).toMatchObject({namespace: 'from-flag', runtimeClass: 'gvisor'})
  })

  it('node selectors and tolerations come from config.json, checked', () => {
    writeConfig({nodeSelector: {'pool': 'sandboxes'}, tolerations: [{key: 'sandbox', operator: 'Equal', value: 'yes', effect: 'NoSchedule'}]})
    expect(resolveSettings(root, {})).toMatchObject({nodeSelector: {pool: 'sandboxes'}, tolerations: [{key: 'sandbox', operator: 'Equal', value: 'yes', effect: 'NoSchedule'}]})
  })

  it('refuses bad values with usage errors naming where they came from', () => {
    expect(usage(() => resolveSettings(root, {}, {'k8s-namespace': 'Bad_NS'}))).toMatch(/--k8s-namespace "Bad_NS" is not a valid namespace/)
    expect(usage(() => resolveSettings(root, {AGENT_K8S_IMAGE_PULL_POLICY: 'sometimes'}))).toMatch(/AGENT_K8S_IMAGE_PULL_POLICY must be one of Always, IfNotPresent, Never/)
    expect(usage(() => resolveSettings(root, {AGENT_K8S_RUNTIME_CLASS: 'g visor'}))).toMatch(/not a valid RuntimeClass/)
    expect(usage(() => resolveSettings(root, {AGENT_K8S_READY_TIMEOUT: '0'}))).toMatch(/1-3600 seconds/)
    writeConfig({tolerations: [{key: 'x', operator: 'Exists', value: 'y'}]})
    expect(usage(() => resolveSettings(root, {}))).toMatch(/operator Exists takes no value/)
    writeConfig({tolerations: [{key: 'x', colour: 'red'}]})
    expect(usage(() => resolveSettings(root, {}))).toMatch(/unknown field "colour"/)
    writeConfig({nodeSelector: {'bad key!': 'x'}})
    expect(usage(() => resolveSettings(root, {}))).toMatch(/not a valid label selector entry/)
    writeConfig({runAsUser: 0})
    expect(usage(() => resolveSettings(root, {}))).toMatch(/non-root uid/)
    writeConfig('gvisor')
    expect(usage(() => resolveSettings(root, {}))).toMatch(/"kubernetes" in .* must be an object/)
    writeFileSync(join(root, 'config.json'), '{broken')
    expect(usage(() => resolveSettings(root, {}))).toMatch(/is not valid JSON/)
  })
})

describe('stateId', () => {
  it('is a stable label value per state dir, different for another dir, and can be given', () => {
    const a = stateId(root, {})
    expect(a).toMatch(/^[0-9a-f]{20}$/)
    expect(stateId(root, {})).toBe(a)
    expect(stateId(join(root, 'other'), {})).not.toBe(a)
    expect(stateId(root, {AGENT_K8S_STATE_ID: 'serve-replicas'})).toBe('serve-replicas')
    expect(usage(() => stateId(root, {AGENT_K8S_STATE_ID: 'no spaces'}))).toMatch(/valid label value/)
  })
})

describe('placement', () => {
  it('is kept per VM, the places used are listed once, and a tampered file is not trusted', () => {
    const paths = new StatePaths(root)
    savePlacement(paths, 'python-0123abcd', {context: 'c1', namespace: 'ns1', runtimeClass: 'kata', imagePullPolicy: 'Always'})
    savePlacement(paths, 'python-0123abce', {context: 'c1', namespace: 'ns1'})
    savePlacement(paths, 'python-0123abcf', {context: 'c2', namespace: 'ns2'})
    expect(loadPlacement(paths, 'python-0123abcd')).toEqual({context: 'c1', namespace: 'ns1', runtimeClass: 'kata', imagePullPolicy: 'Always'})
    expect(usedPlaces(paths)).toEqual([{context: 'c1', namespace: 'ns1'}, {context: 'c2', namespace: 'ns2'}])
    writeFileSync(join(paths.vmDir('python-0123abcd'), 'kubernetes.json'), JSON.stringify({namespace: '../etc'}))
    expect(loadPlacement(paths, 'python-0123abcd')).toBeUndefined()
    expect(loadPlacement(paths, 'python-99999999')).toBeUndefined()
  })
})
