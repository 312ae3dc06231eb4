import * as k8s from '@kubernetes/client-node'
import {execFileSync, spawnSync} from 'node:child_process'
import {existsSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {PassThrough, Readable} from 'node:stream'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import WebSocket from 'ws'
// @ts-expect-error plain ESM fixture without type declarations
import {kubeconfigText, startStandin} from '../fixtures/k8s-standin/index.mjs'
import {waitUntil} from '../helpers/wait.js'

// The contract test of the Kubernetes API stand-in (test/fixtures/k8s-standin): the REAL
// @kubernetes/client-node 1.4.0 against it, with real runc containers from the test image store.
// It checks the calls the kubernetes launcher relies on behave as the real API server's do.

const IMAGE = 'localhost/agent/python:3.13'
const STORE_ENV = {CONTAINERS_STORAGE_CONF: '/var/tmp/agent-test-images/storage.conf'}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any
let s: Any
let kc: k8s.KubeConfig
let core: k8s.CoreV1Api
let ns: string

const podBody = (name: string, extra: Any = {}) => ({
  metadata: {name, labels: {'app.kubernetes.io/managed-by': 'agent', 'agent.dev/vm': name, ...extra.labels}},
  spec: {
    automountServiceAccountToken: false,
    runtimeClassName: 'gvisor',
    restartPolicy: 'Never',
    terminationGracePeriodSeconds: 0,
    containers: [{name: 'sandbox', image: extra.image ?? IMAGE, command: ['sleep', 'infinity'], resources: extra.resources ?? {limits: {cpu: '500m', memory: '128Mi'}}, ...extra.container}],
    ...extra.spec,
  },
})

/** The Status body of a failed client-node call. */
async function failure(p: Promise<unknown>): Promise<{code: number; body: Any}> {
  try {
    await p
  } catch (e: Any) {
    const body = typeof e.body === 'string' ? JSON.parse(e.body) : e.body
    return {code: e.code, body}
  }
  throw new Error('the call succeeded; a failure was expected')
}

/** Watches one pod by name until `done(pod)` holds; resolves with every event type seen. */
function watchPod(name: string, done: (pod: Any, type: string) => boolean, resourceVersion?: string): Promise<{types: string[]; pod: Any}> {
  return new Promise((resolve, reject) => {
    const types: string[] = []
    let req: AbortController | undefined
    const timer = setTimeout(() => {
      req?.abort()
      reject(new Error(`pod ${name}: condition not reached; events ${types.join(',')}`))
    }, 60_000)
    new k8s.Watch(kc)
      .watch(
        `/api/v1/namespaces/${ns}/pods`,
        {fieldSelector: `metadata.name=${name}`, ...(resourceVersion ? {resourceVersion} : {})},
        (type, obj) => {
          types.push(type)
          if (done(obj, type)) {
            clearTimeout(timer)
            req?.abort()
            resolve({types, pod: obj})
          }
        },
        (err) => err && err.name !== 'AbortError' && reject(err),
      )
      .then((c) => (req = c), reject)
  })
}

const ready = (p: Any) => (p.status?.conditions ?? []).some((c: Any) => c.type === 'Ready' && c.status === 'True')

interface ExecResult {
  stdout: string
  stderr: string
  status: Any
  protocol: string
}

/** Runs argv in the pod through client-node's Exec; stdin (when given) is sent and then closed. */
function execIn(pod: string, argv: string[], stdin?: Buffer | string): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const out = new PassThrough()
    const err = new PassThrough()
    let stdout = ''
    let stderr = ''
    out.on('data', (b) => (stdout += b))
    err.on('data', (b) => (stderr += b))
    let protocol = ''
    const timer = setTimeout(() => reject(new Error(`exec ${argv.join(' ')}: no status`)), 60_000)
    new k8s.Exec(kc)
      .exec(ns, pod, 'sandbox', argv, out, err, stdin === undefined ? null : Readable.from([Buffer.from(stdin)]), false, (status) => {
        clearTimeout(timer)
        // The status frame ends the streams; let the last chunks land.
        setImmediate(() => resolve({stdout, stderr, status, protocol}))
      })
      .then((ws: Any) => (protocol = ws.protocol), reject)
  })
}

beforeAll(async () => {
  s = await startStandin({runtimeClasses: ['gvisor'], capacity: {cpu: '4', memory: '4Gi', 'ephemeral-storage': '10Gi'}})
  ns = s.namespace
  kc = new k8s.KubeConfig()
  kc.loadFromFile(s.kubeconfigPath)
  core = kc.makeApiClient(k8s.CoreV1Api)
  await core.createNamespacedPod({namespace: ns, body: podBody('shared')})
  await watchPod('shared', ready)
})

afterAll(async () => {
  await s?.close()
})

describe('k8s stand-in: API contract through @kubernetes/client-node', () => {
  it('authenticates: a wrong token is 401 Unauthorized; the right one reads /version, its namespace, its RuntimeClass', async () => {
    const bad = new k8s.KubeConfig()
    bad.loadFromString(kubeconfigText({server: s.url, token: 'wrong', namespace: ns}))
    const f = await failure(bad.makeApiClient(k8s.CoreV1Api).readNamespace({name: ns}))
    expect(f.code).toBe(401)
    // client-node keeps no body for a 401; the server sends the Status a real one sends.
    const raw = await fetch(`${s.url}/api/v1/namespaces/${ns}/pods`, {headers: {Authorization: 'Bearer wrong'}})
    expect(raw.status).toBe(401)
    expect(await raw.json()).toMatchObject({kind: 'Status', status: 'Failure', reason: 'Unauthorized', code: 401})
    expect((await fetch(`${s.url}/version`)).status).toBe(401)

    const v = await kc.makeApiClient(k8s.VersionApi).getCode()
    expect(v.major).toBe('1')
    expect((await core.readNamespace({name: ns})).status?.phase).toBe('Active')
    const missing = await failure(core.readNamespace({name: 'no-such-namespace'}))
    expect(missing.code).toBe(404)
    expect(missing.body).toMatchObject({reason: 'NotFound', message: 'namespaces "no-such-namespace" not found'})

    const node = kc.makeApiClient(k8s.NodeV1Api)
    expect((await node.readRuntimeClass({name: 'gvisor'})).handler).toBe('runsc')
    const kata = await failure(node.readRuntimeClass({name: 'kata'}))
    expect(kata.code).toBe(404)
    expect(kata.body.reason).toBe('NotFound')
  })

  it('creates a pod that becomes Running and Ready (watch: ADDED then MODIFIED), lists it by label, and refuses a duplicate with 409', async () => {
    const created = await core.createNamespacedPod({namespace: ns, body: podBody('p-life', {labels: {'agent.dev/state': 'abc'}})})
    expect(created.status?.phase).toBe('Pending')
    expect(created.metadata?.uid).toBeTruthy()
    const {types, pod} = await watchPod('p-life', ready)
    expect(types[0]).toBe('ADDED')
    expect(types).toContain('MODIFIED')
    expect(pod.status.phase).toBe('Running')
    expect(pod.status.containerStatuses[0].state.running).toBeTruthy()

    const listed = await core.listNamespacedPod({namespace: ns, labelSelector: 'app.kubernetes.io/managed-by=agent,agent.dev/state=abc'})
    expect(listed.items.map((p) => p.metadata?.name)).toEqual(['p-life'])
    expect((await core.listNamespacedPod({namespace: ns, labelSelector: 'agent.dev/state=other'})).items).toEqual([])

    const dup = await failure(core.createNamespacedPod({namespace: ns, body: podBody('p-life')}))
    expect(dup.code).toBe(409)
    expect(dup.body).toMatchObject({reason: 'AlreadyExists', message: 'pods "p-life" already exists'})
  })

  it('refuses bad pods as the API server does: 422 Invalid with field causes, 403 for a missing RuntimeClass and for Pod Security baseline; none is stored', async () => {
    const noImage = podBody('p-bad', {container: {image: ''}})
    const inv = await failure(core.createNamespacedPod({namespace: ns, body: noImage}))
    expect(inv.code).toBe(422)
    expect(inv.body.reason).toBe('Invalid')
    expect(inv.body.details.causes).toContainEqual(expect.objectContaining({field: 'spec.containers[0].image'}))

    const rc = await failure(core.createNamespacedPod({namespace: ns, body: podBody('p-kata', {spec: {runtimeClassName: 'kata'}})}))
    expect(rc.code).toBe(403)
    expect(rc.body).toMatchObject({reason: 'Forbidden', message: 'pods "p-kata" is forbidden: pod rejected: RuntimeClass "kata" not found'})

    const host = await failure(core.createNamespacedPod({namespace: ns, body: podBody('p-host', {spec: {hostNetwork: true}})}))
    expect(host.code).toBe(403)
    expect(host.body.message).toContain('violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true)')

    const names = s.pods().map((p: Any) => p.metadata.name)
    expect(names).not.toContain('p-bad')
    expect(names).not.toContain('p-kata')
    expect(names).not.toContain('p-host')
  })

  it('exec over v5: stdout, stderr, the exit code from the status channel, and stdin closed with the v5 close frame', async () => {
    const r = await execIn('shared', ['sh', '-c', 'echo out; echo err >&2; exit 3'])
    expect(r.protocol).toBe('v5.channel.k8s.io')
    expect(r.stdout).toBe('out\n')
    expect(r.stderr).toBe('err\n')
    expect(r.status).toMatchObject({status: 'Failure', reason: 'NonZeroExitCode', details: {causes: [{reason: 'ExitCode', message: '3'}]}})

    // cat ends only when stdin is closed: the v5 close frame reaches the process as EOF.
    const cat = await execIn('shared', ['sh', '-c', 'cat; echo " done"'], 'through stdin')
    expect(cat.stdout).toBe('through stdin done\n')
    expect(cat.status.status).toBe('Success')
  })

  it('exec carries a tar stream both ways (the vm cp path): bytes written through stdin come back identical', async () => {
    const dir = join(s.dir, 'tar-src')
    execFileSync('mkdir', ['-p', dir])
    const payload = Buffer.alloc(300_000)
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7919) % 251
    writeFileSync(join(dir, 'blob.bin'), payload)
    const tarball = execFileSync('tar', ['-C', dir, '-cf', '-', 'blob.bin'])
    const put = await execIn('shared', ['tar', '-x', '-f', '-', '-C', '/tmp'], tarball)
    expect(put.status.status, put.stderr).toBe('Success')
    const sum = await execIn('shared', ['sha256sum', '/tmp/blob.bin'])
    const want = execFileSync('sha256sum', [join(dir, 'blob.bin')]).toString().split(' ')[0]
    expect(sum.stdout.split(' ')[0]).toBe(want)
  })

  it('exec falls back to v4 when the server offers only v4 (exit code still from the status channel), and a client offering nothing it supports gets 403', async () => {
    s.setProtocols(['v4.channel.k8s.io'])
    try {
      const r = await execIn('shared', ['sh', '-c', 'echo four; exit 7'])
      expect(r.protocol).toBe('v4.channel.k8s.io')
      expect(r.stdout).toBe('four\n')
      expect(r.status.details.causes[0]).toEqual({reason: 'ExitCode', message: '7'})
    } finally {
      s.setProtocols(['v5.channel.k8s.io', 'v4.channel.k8s.io'])
    }
    const code = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`${s.url.replace('http', 'ws')}/api/v1/namespaces/${ns}/pods/shared/exec?command=true&stdout=true`, ['v1.unknown.k8s.io'], {headers: {Authorization: `Bearer ${s.token}`}})
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
      ws.on('open', () => resolve(101))
      ws.on('error', () => {})
    })
    expect(code).toBe(403)
  })

  it('a watch from a compacted resourceVersion gets ERROR 410 Expired; a relist gives a resourceVersion to resume from', async () => {
    const before = await core.listNamespacedPod({namespace: ns})
    const oldRv = before.metadata?.resourceVersion as string
    await core.createNamespacedPod({namespace: ns, body: podBody('p-rv1')})
    s.compact()
    const gone = await watchPod('p-rv1', (_p, type) => type === 'ERROR', oldRv)
    expect(gone.types).toEqual(['ERROR'])
    expect(gone.pod).toMatchObject({kind: 'Status', code: 410, reason: 'Expired'})

    const relist = await core.listNamespacedPod({namespace: ns})
    const rv = relist.metadata?.resourceVersion as string
    expect(Number(rv)).toBeGreaterThan(Number(oldRv))
    await core.deleteNamespacedPod({name: 'p-rv1', namespace: ns, gracePeriodSeconds: 0})
    const resumed = await watchPod('p-rv1', (_p, type) => type === 'DELETED', rv)
    expect(resumed.types).not.toContain('ERROR')
    expect(resumed.types[resumed.types.length - 1]).toBe('DELETED')
  })

  it('RBAC: with get/list on pods only, create is 403 with the real wording, exec is refused, and SelfSubjectAccessReview says which verbs are allowed', async () => {
    s.setRules([{verbs: ['get', 'list'], apiGroups: [''], resources: ['pods']}])
    try {
      const f = await failure(core.createNamespacedPod({namespace: ns, body: podBody('p-rbac')}))
      expect(f.code).toBe(403)
      expect(f.body.reason).toBe('Forbidden')
      expect(f.body.message).toMatch(new RegExp(`^pods is forbidden: User ".+" cannot create resource "pods" in API group "" in the namespace "${ns}"$`))
      const auth = kc.makeApiClient(k8s.AuthorizationV1Api)
      const review = async (verb: string, subresource?: string) =>
        (await auth.createSelfSubjectAccessReview({body: {spec: {resourceAttributes: {namespace: ns, verb, resource: 'pods', subresource}}}})).status?.allowed
      expect(await review('get')).toBe(true)
      expect(await review('create')).toBe(false)
      expect(await review('create', 'exec')).toBe(false)
      await expect(execIn('shared', ['true'])).rejects.toThrow(/403/)
    } finally {
      s.setRules(null)
    }
  })

  it('a pod that does not fit the node stays Pending/Unschedulable; a missing image ends in ImagePullBackOff', async () => {
    await core.createNamespacedPod({namespace: ns, body: podBody('p-big', {resources: {requests: {memory: '64Gi'}, limits: {memory: '64Gi'}}})})
    const big = await watchPod('p-big', (p) => (p.status?.conditions ?? []).some((c: Any) => c.type === 'PodScheduled' && c.status === 'False'))
    const cond = big.pod.status.conditions.find((c: Any) => c.type === 'PodScheduled')
    expect(cond.reason).toBe('Unschedulable')
    expect(cond.message).toContain('Insufficient memory')
    expect(big.pod.status.phase).toBe('Pending')

    await core.createNamespacedPod({namespace: ns, body: podBody('p-noimg', {image: 'localhost/agent/no-such-image:1'})})
    const pull = await watchPod('p-noimg', (p) => p.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'ImagePullBackOff')
    expect(pull.types).toContain('MODIFIED')
    for (const name of ['p-big', 'p-noimg']) await core.deleteNamespacedPod({name, namespace: ns})
    expect(await waitUntil(() => !s.pods().some((p: Any) => ['p-big', 'p-noimg'].includes(p.metadata.name)), 10_000)).toBe(true)
  })

  it('delete honours the grace period (terminating, then DELETED), then 404; the container is gone', async () => {
    await core.createNamespacedPod({namespace: ns, body: podBody('p-grace', {spec: {terminationGracePeriodSeconds: 1}})})
    await watchPod('p-grace', ready)
    const containersBefore = s.containers().length
    const del = await core.deleteNamespacedPod({name: 'p-grace', namespace: ns})
    expect(del.metadata?.deletionTimestamp).toBeTruthy()
    expect(del.metadata?.deletionGracePeriodSeconds).toBe(1)
    // sleep as PID 1 ignores SIGTERM: it is killed when the grace period ends.
    await watchPod('p-grace', (_p, type) => type === 'DELETED', del.metadata?.resourceVersion)
    expect((await failure(core.readNamespacedPod({name: 'p-grace', namespace: ns}))).code).toBe(404)
    expect((await failure(core.deleteNamespacedPod({name: 'p-grace', namespace: ns}))).body.reason).toBe('NotFound')
    expect(s.containers().length).toBe(containersBefore - 1)
  })

  it('a PVC keeps its data across pods; NetworkPolicies are stored, listed by label and deleted', async () => {
    await core.createNamespacedPersistentVolumeClaim({
      namespace: ns,
      body: {metadata: {name: 'persist-a', labels: {'agent.dev/vm': 'a'}}, spec: {accessModes: ['ReadWriteOnce'], resources: {requests: {storage: '1Gi'}}}},
    })
    const withPvc = (name: string) =>
      podBody(name, {spec: {volumes: [{name: 'persist', persistentVolumeClaim: {claimName: 'persist-a'}}]}, container: {volumeMounts: [{name: 'persist', mountPath: '/persist'}]}})
    await core.createNamespacedPod({namespace: ns, body: withPvc('p-pvc1')})
    await watchPod('p-pvc1', ready)
    expect((await execIn('p-pvc1', ['sh', '-c', 'echo kept > /persist/f'])).status.status).toBe('Success')
    await core.deleteNamespacedPod({name: 'p-pvc1', namespace: ns, gracePeriodSeconds: 0})
    await core.createNamespacedPod({namespace: ns, body: withPvc('p-pvc2')})
    await watchPod('p-pvc2', ready)
    expect((await execIn('p-pvc2', ['cat', '/persist/f'])).stdout).toBe('kept\n')
    await core.deleteNamespacedPod({name: 'p-pvc2', namespace: ns, gracePeriodSeconds: 0})
    await core.deleteNamespacedPersistentVolumeClaim({name: 'persist-a', namespace: ns})
    expect(await waitUntil(() => s.persistentVolumeClaims().length === 0, 10_000)).toBe(true)

    const net = kc.makeApiClient(k8s.NetworkingV1Api)
    await net.createNamespacedNetworkPolicy({
      namespace: ns,
      body: {metadata: {name: 'deny-egress-a', labels: {'agent.dev/vm': 'a'}}, spec: {podSelector: {matchLabels: {'agent.dev/vm': 'a'}}, policyTypes: ['Egress'], egress: []}},
    })
    const bad = await failure(
      net.createNamespacedNetworkPolicy({namespace: ns, body: {metadata: {name: 'bad'}, spec: {podSelector: {}, egress: [{to: [{ipBlock: {cidr: 'not-a-cidr'}}]}]}}}),
    )
    expect(bad.code).toBe(422)
    expect((await net.listNamespacedNetworkPolicy({namespace: ns, labelSelector: 'agent.dev/vm=a'})).items.map((n) => n.metadata?.name)).toEqual(['deny-egress-a'])
    await net.deleteNamespacedNetworkPolicy({name: 'deny-egress-a', namespace: ns})
    expect(s.networkPolicies()).toEqual([])
  })

  it('the service account token is mounted unless the pod opts out', async () => {
    const r = await execIn('shared', ['ls', '/var/run/secrets/kubernetes.io/serviceaccount'])
    expect(r.status.status).toBe('Failure')
    await core.createNamespacedPod({namespace: ns, body: podBody('p-token', {spec: {automountServiceAccountToken: true}})})
    await watchPod('p-token', ready)
    expect((await execIn('p-token', ['ls', '/var/run/secrets/kubernetes.io/serviceaccount'])).stdout).toBe('token\n')
    await core.deleteNamespacedPod({name: 'p-token', namespace: ns, gracePeriodSeconds: 0})
  })

  it('runAsNonRoot with a root image is refused by the kubelet check (CreateContainerConfigError); runAsUser 1000 runs as uid 1000 with the API address in the environment', async () => {
    await core.createNamespacedPod({namespace: ns, body: podBody('p-nonroot', {container: {securityContext: {runAsNonRoot: true}}})})
    const refused = await watchPod('p-nonroot', (p) => p.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'CreateContainerConfigError')
    expect(refused.pod.status.containerStatuses[0].state.waiting.message).toContain('runAsNonRoot and image will run as root')
    await core.createNamespacedPod({namespace: ns, body: podBody('p-uid', {container: {securityContext: {runAsNonRoot: true, runAsUser: 1000, allowPrivilegeEscalation: false, capabilities: {drop: ['ALL']}}}})})
    await watchPod('p-uid', ready)
    const r = await execIn('p-uid', ['sh', '-c', 'id -u; echo $KUBERNETES_SERVICE_HOST; grep CapEff /proc/self/status'])
    expect(r.stdout).toBe('1000\n10.96.0.1\nCapEff:\t0000000000000000\n')
    for (const name of ['p-nonroot', 'p-uid']) await core.deleteNamespacedPod({name, namespace: ns, gracePeriodSeconds: 0})
  })

  it('close() leaves no runc container, buildah container, mount or directory behind', async () => {
    const other = await startStandin({})
    const okc = new k8s.KubeConfig()
    okc.loadFromFile(other.kubeconfigPath)
    const ocore = okc.makeApiClient(k8s.CoreV1Api)
    await ocore.createNamespacedPod({namespace: other.namespace, body: podBody('p-close')})
    expect(await waitUntil(async () => ready(await ocore.readNamespacedPod({name: 'p-close', namespace: other.namespace})), 60_000)).toBe(true)
    const [id] = other.containers()
    expect(id).toMatch(/^k8s-standin-/)
    await other.close()
    expect(existsSync(other.dir)).toBe(false)
    const buildah = spawnSync('buildah', ['containers', '--format', '{{.ContainerName}}'], {env: {...process.env, ...STORE_ENV}, encoding: 'utf8'})
    expect(buildah.status).toBe(0)
    expect(buildah.stdout.split('\n')).not.toContain(id)
    expect(spawnSync('sh', ['-c', `grep -c ${id} /proc/self/mountinfo`], {encoding: 'utf8'}).stdout.trim()).toBe('0')
    expect(spawnSync('sh', ['-c', `ps -eo args | grep -v grep | grep -c ${id}`], {encoding: 'utf8'}).stdout.trim()).toBe('0')
  })
})
