/**
 * The kubernetes launcher end to end: the real `agent` CLI (and `agent serve` with the real e2b SDK)
 * with `--launcher kubernetes`, against the Kubernetes API stand-in (test/fixtures/k8s-standin:
 * real HTTP/WebSocket protocol, real runc containers; no scheduler, kubelet or CNI). With
 * AGENT_K8S_REAL_KUBECONFIG set, the same cases run against that real cluster instead (what
 * scripts/k8s-smoke.sh does; not in CI). Assertions go through @kubernetes/client-node, so they
 * hold for both.
 */
import * as k8s from '@kubernetes/client-node'
import {execa} from 'execa'
import {mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
// @ts-expect-error plain ESM fixture without type declarations
import {kubeconfigText, startStandin} from '../fixtures/k8s-standin/index.mjs'
import {ROOT, agentIn, tempState, type AgentResult} from '../helpers/agent.js'
import {freePort} from '../helpers/ports.js'
import {startServe, type ServeChild} from '../helpers/serve.js'
import {waitUntil} from '../helpers/wait.js'

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any

interface Cluster {
  kubeconfig: string
  namespace: string
  /** Offer only these exec subprotocols; undefined on a real cluster (it cannot be told). */
  offerOnly?: (protocols: string[] | null) => void
  /** Stand-in only: the stand-in itself, for fault injection a real cluster cannot be told to do. */
  standin?: Any
  /** Runs fn with a kubeconfig whose user may only read pods (and the namespace and RuntimeClass). */
  withFewPermissions<T>(fn: (kubeconfig: string) => Promise<T>): Promise<T>
  close(): Promise<void>
}

const REAL = process.env.AGENT_K8S_REAL_KUBECONFIG

/** docs/scale-out.md's Role, and the reads of the namespace and the RuntimeClass doctor makes. */
const LEAST_PRIVILEGE = [
  {apiGroups: [''], resources: ['pods'], verbs: ['create', 'get', 'list', 'watch', 'delete']},
  {apiGroups: [''], resources: ['pods/exec'], verbs: ['create', 'get']},
  {apiGroups: [''], resources: ['persistentvolumeclaims'], verbs: ['create', 'list', 'delete']},
  {apiGroups: ['networking.k8s.io'], resources: ['networkpolicies'], verbs: ['create', 'list', 'delete']},
  {apiGroups: [''], resources: ['namespaces'], verbs: ['get']},
  {apiGroups: ['node.k8s.io'], resources: ['runtimeclasses'], verbs: ['get']},
]

async function openCluster(): Promise<Cluster> {
  if (REAL) {
    const limited = process.env.AGENT_K8S_REAL_LIMITED_KUBECONFIG
    return {
      kubeconfig: REAL,
      namespace: process.env.AGENT_K8S_REAL_NAMESPACE ?? 'agent-e2e',
      async withFewPermissions(fn) {
        if (!limited) throw new Error('AGENT_K8S_REAL_LIMITED_KUBECONFIG is not set (scripts/k8s-smoke.sh makes one for a read-only service account)')
        return fn(limited)
      },
      close: async () => {},
    }
  }
  // The CLI's token gets exactly the least-privilege Role of docs/scale-out.md (plus the two
  // cluster-scoped reads doctor makes), so every case also shows the launcher needs no more.
  const s = await startStandin({runtimeClasses: ['gvisor'], capacity: {cpu: '8', memory: '8Gi', 'ephemeral-storage': '40Gi'}, rules: LEAST_PRIVILEGE})
  // A second, read-only user, as scripts/k8s-smoke.sh makes a read-only service account.
  const readOnly = s.addUser('agent-readonly', [
    {verbs: ['get', 'list', 'watch'], apiGroups: [''], resources: ['pods', 'namespaces']},
    {verbs: ['get'], apiGroups: ['node.k8s.io'], resources: ['runtimeclasses']},
  ])
  return {
    kubeconfig: s.kubeconfigPath,
    namespace: s.namespace,
    withFewPermissions: (fn) => fn(readOnly),
    offerOnly: (p) => s.setProtocols(p ?? ['v5.channel.k8s.io', 'v4.channel.k8s.io']),
    standin: s,
    close: () => s.close(),
  }
}

let cluster: Cluster
let core: k8s.CoreV1Api
let net: k8s.NetworkingV1Api
const states: Array<{cleanup: () => void; a: ReturnType<typeof agentIn>}> = []

/** A fresh state dir bound to the cluster, cleaned (VMs and dir) after the file. */
function k8sState(prefix: string, extraEnv: Record<string, string> = {}) {
  const st = tempState(prefix)
  const env = {...st.env, AGENT_LAUNCHER: 'kubernetes', AGENT_K8S_KUBECONFIG: cluster.kubeconfig, AGENT_K8S_NAMESPACE: cluster.namespace, ...extraEnv}
  const a = agentIn(env)
  states.push({cleanup: st.cleanup, a})
  return {st, env, a}
}

const sel = (labels: Record<string, string>) =>
  Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',')
const podsOf = async (labels: Record<string, string>) => (await core.listNamespacedPod({namespace: cluster.namespace, labelSelector: sel(labels)})).items
const policiesOf = async (labels: Record<string, string>) => (await net.listNamespacedNetworkPolicy({namespace: cluster.namespace, labelSelector: sel(labels)})).items
const claimsOf = async (labels: Record<string, string>) => (await core.listNamespacedPersistentVolumeClaim({namespace: cluster.namespace, labelSelector: sel(labels)})).items
/** Every object agent made in the namespace, by kind and name (to show a failure left nothing). */
const everything = async () => {
  const m = {'app.kubernetes.io/managed-by': 'agent'}
  return [...(await podsOf(m)).map((p) => `pod/${p.metadata?.name}`), ...(await policiesOf(m)).map((p) => `netpol/${p.metadata?.name}`), ...(await claimsOf(m)).map((p) => `pvc/${p.metadata?.name}`)].sort()
}
const expectOk = (r: AgentResult) => expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0)

let main: ReturnType<typeof k8sState>
let vm: string

beforeAll(async () => {
  cluster = await openCluster()
  const kc = new k8s.KubeConfig()
  kc.loadFromFile(cluster.kubeconfig)
  core = kc.makeApiClient(k8s.CoreV1Api)
  net = kc.makeApiClient(k8s.NetworkingV1Api)
  main = k8sState('agent-k8s-')
  const r = await main.a(['vm', 'create', '--language', 'python', '--mem', '128'])
  expectOk(r)
  vm = r.stdout.trim()
})

afterAll(async () => {
  try {
    for (const s of states) {
      await s.a(['vm', 'clean', '--all'])
      s.cleanup()
    }
    // Well-behaved client: once every state dir is cleaned, nothing of agent's is left in the namespace.
    if (core) expect(await everything()).toEqual([])
  } finally {
    await cluster?.close()
  }
})

describe('kubernetes launcher: one VM through the CLI', () => {
  it('vm create makes one locked-down pod labelled for agent, the state dir and the VM, and a deny-all egress NetworkPolicy', async () => {
    const pods = await podsOf({'agent.dev/vm': vm})
    expect(pods).toHaveLength(1)
    const pod = pods[0]!
    expect(pod.metadata?.labels?.['app.kubernetes.io/managed-by']).toBe('agent')
    expect(pod.metadata?.labels?.['agent.dev/state']).toMatch(/^[A-Za-z0-9._-]+$/)
    expect(pod.status?.phase).toBe('Running')
    const spec = pod.spec!
    expect(spec.runtimeClassName).toBe('gvisor')
    expect(spec.automountServiceAccountToken).toBe(false)
    expect([spec.hostNetwork, spec.hostPID, spec.hostIPC].some((x) => x === true)).toBe(false)
    const c = spec.containers[0]!
    expect(c.name).toBe('sandbox')
    expect(c.resources?.limits?.memory).toBe('128Mi')
    expect(c.securityContext?.allowPrivilegeEscalation).toBe(false)
    expect(c.securityContext?.privileged).not.toBe(true)
    // No service account token inside: the sandbox cannot talk to the API server as anyone.
    const token = await main.a(['vm', 'exec', '-v', vm, '-c', 'ls /var/run/secrets/kubernetes.io/serviceaccount'])
    expect(token.code).not.toBe(0)
    const policies = await policiesOf({'agent.dev/vm': vm})
    expect(policies.length).toBeGreaterThan(0)
    const deny = policies.find((p) => p.spec?.policyTypes?.includes('Egress') && (p.spec?.egress ?? []).length === 0)
    expect(deny, JSON.stringify(policies.map((p) => p.spec))).toBeDefined()
  })

  it('vm exec: stdout, stderr and the exit code come back; stdin streams through (200 KB)', async () => {
    const r = await main.a(['vm', 'exec', '-v', vm, '-c', 'echo out; echo err >&2; exit 3'])
    expect(r.code).toBe(3)
    expect(r.stdout).toBe('out\n')
    expect(r.stderr).toContain('err\n')
    const cat = await main.a(['vm', 'exec', '-v', vm, '-i', '-c', 'cat; echo done'], {input: 'hello\n'})
    expectOk(cat)
    expect(cat.stdout).toBe('hello\ndone\n')
    const big = 'x'.repeat(200 * 1024)
    const wc = await main.a(['vm', 'exec', '-v', vm, '-i', '-c', 'wc -c'], {input: big})
    expectOk(wc)
    expect(wc.stdout.trim()).toBe(String(big.length))
  })

  it('--timeout kills the command and its whole process tree (exit 124)', async () => {
    const r = await main.a(['vm', 'exec', '-v', vm, '--timeout', '2', '-c', 'sleep 4242 & sleep 4343; echo never'])
    expect(r.code).toBe(124)
    expect(r.stdout).not.toContain('never')
    const ps = async () => (await main.a(['vm', 'exec', '-v', vm, '-c', 'for f in /proc/[0-9]*/cmdline; do tr "\\000" " " < $f; echo; done'])).stdout
    expect(await waitUntil(async () => !/sleep 4[23]4[23]/.test(await ps()), 20_000), await ps()).toBe(true)
  })

  it('vm cp copies a directory in and out through tar over exec, byte for byte', async () => {
    const src = join(main.st.dir, 'cp-src')
    mkdirSync(join(src, 'sub'), {recursive: true})
    const blob = Buffer.alloc(150_000)
    for (let i = 0; i < blob.length; i++) blob[i] = (i * 31) % 256
    writeFileSync(join(src, 'sub', 'blob.bin'), blob)
    writeFileSync(join(src, 'note.txt'), 'a note\n')
    expectOk(await main.a(['vm', 'cp', src, `${vm}:/tmp/cp-in`]))
    const seen = await main.a(['vm', 'exec', '-v', vm, '-c', 'cat /tmp/cp-in/note.txt; wc -c < /tmp/cp-in/sub/blob.bin'])
    expect(seen.stdout).toBe(`a note\n${blob.length}\n`)
    const back = join(main.st.dir, 'cp-back')
    expectOk(await main.a(['vm', 'cp', `${vm}:/tmp/cp-in`, back]))
    expect(readFileSync(join(back, 'sub', 'blob.bin'))).toEqual(blob)
    expect(readFileSync(join(back, 'note.txt'), 'utf8')).toBe('a note\n')
  })

  it('vm run --file runs a python file from /in, and --out brings /out back', async () => {
    const file = join(main.st.dir, 'job.py')
    writeFileSync(file, 'import sys\nprint("sum", sum(range(10)))\nopen("/out/result.txt", "w").write("from the pod\\n")\n')
    const out = join(main.st.dir, 'run-out')
    const r = await main.a(['vm', 'run', '-v', vm, '--file', file, '--out', out])
    expectOk(r)
    expect(r.stdout).toContain('sum 45')
    expect(readFileSync(join(out, 'result.txt'), 'utf8')).toBe('from the pod\n')
  })
})

describe('kubernetes launcher: exec protocol fallback, watch 410, network refusals', () => {
  it('exec falls back to v4.channel.k8s.io when the API server offers no v5: exit code, stdout and stdin (with its end) still work', async (ctx) => {
    if (!cluster.offerOnly) return ctx.skip('a real cluster cannot be told to offer only v4 (stand-in only)')
    cluster.offerOnly(['v4.channel.k8s.io'])
    try {
      const r = await main.a(['vm', 'exec', '-v', vm, '-c', 'echo over v4; exit 5'])
      expect(r.code, r.stderr).toBe(5)
      expect(r.stdout).toBe('over v4\n')
      const wc = await main.a(['vm', 'exec', '-v', vm, '-i', '-c', 'wc -c'], {input: 'abc', timeoutMs: 30_000})
      expect(wc.code, wc.stderr).toBe(0)
      expect(wc.stdout.trim()).toBe('3')
    } finally {
      cluster.offerOnly(null)
    }
  })

  it('vm create rides out a 410 Gone while it waits for the pod: it relists, watches again and succeeds', async (ctx) => {
    const s = cluster.standin
    if (!s) return ctx.skip('a real cluster cannot be told to expire a watch (stand-in only)')
    const release = s.holdPods()
    let released = false
    try {
      s.expireNextWatch()
      const before = s.watchesFromVersion()
      const creating = main.a(['vm', 'create', '--language', 'python', '--mem', '128'])
      // The first resumed watch got 410; a well-behaved client relists and watches again.
      expect(await waitUntil(() => s.watchesFromVersion() >= before + 2, 60_000), JSON.stringify(s.requests.slice(-6))).toBe(true)
      release()
      released = true
      const r = await creating
      expectOk(r)
      expect(await podsOf({'agent.dev/vm': r.stdout.trim()})).toHaveLength(1)
      expectOk(await main.a(['vm', 'clean', '-v', r.stdout.trim()]))
    } finally {
      if (!released) release()
    }
  })

  it('--network with a domain name is refused before anything is made (a NetworkPolicy names addresses only)', async () => {
    const before = await everything()
    const d = await main.a(['vm', 'create', '--language', 'python', '--mem', '128', '--network', 'allow:pypi.org'])
    expect(d.code).toBe(2)
    expect(d.stderr).toMatch(/domain names/)
    expect(await everything()).toEqual(before)
  })
})

describe('kubernetes launcher: lifecycle and failures', () => {
  it('--network allow:CIDR adds an egress NetworkPolicy for that CIDR (and DNS) to the deny-all; stop deletes the pod and keeps the --persist claim; start makes it again with /persist intact; clean removes every object', async () => {
    const r = await main.a(['vm', 'create', '--language', 'python', '--mem', '128', '--persist', '--name', 'keeper', '--network', 'allow:10.1.2.0/24'])
    expectOk(r)
    const id = r.stdout.trim()
    const mine = {'agent.dev/vm': id}
    const policies = await policiesOf(mine)
    const cidrs = policies.flatMap((p) => (p.spec?.egress ?? []).flatMap((e) => (e.to ?? []).map((t) => t.ipBlock?.cidr))).filter(Boolean)
    expect(cidrs).toEqual(['10.1.2.0/24'])
    const ports = policies.flatMap((p) => (p.spec?.egress ?? []).flatMap((e) => (e.ports ?? []).map((x) => `${x.protocol}/${x.port}`)))
    expect(ports).toEqual(expect.arrayContaining(['UDP/53']))
    expect(policies.some((p) => p.spec?.policyTypes?.includes('Egress') && (p.spec?.egress ?? []).length === 0)).toBe(true)
    expectOk(await main.a(['vm', 'exec', '-v', id, '-c', 'echo kept > /persist/k; echo lost > /tmp/t']))
    expect(await claimsOf(mine)).toHaveLength(1)
    expectOk(await main.a(['vm', 'stop', '-v', id]))
    expect(await waitUntil(async () => (await podsOf(mine)).length === 0, 60_000)).toBe(true)
    expect(await claimsOf(mine)).toHaveLength(1)
    expectOk(await main.a(['vm', 'start', '-v', id]))
    const after = await main.a(['vm', 'exec', '-v', id, '-c', 'cat /persist/k; cat /tmp/t 2>/dev/null || echo "no /tmp/t"'])
    expect(after.stdout).toBe('kept\nno /tmp/t\n')
    expectOk(await main.a(['vm', 'clean', '-v', id]))
    expect(await waitUntil(async () => (await podsOf(mine)).length + (await claimsOf(mine)).length + (await policiesOf(mine)).length === 0, 60_000)).toBe(true)
  })

  it('an unknown RuntimeClass fails create with the cluster\'s reason and leaves nothing behind', async () => {
    const ids = async () => (JSON.parse((await main.a(['vm', 'list', '--all', '--json'])).stdout) as Array<{id: string}>).map((v) => v.id).sort()
    const before = await everything()
    const vmsBefore = await ids()
    const r = await main.a(['vm', 'create', '--language', 'python', '--mem', '128'], {env: {AGENT_K8S_RUNTIME_CLASS: 'kata-not-here'}})
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain('RuntimeClass "kata-not-here" not found')
    expect(await everything()).toEqual(before)
    expect(await ids()).toEqual(vmsBefore)
  })

  it('a pod no node can take (too much memory; a node selector from config.json) fails create as Unschedulable and is rolled back', async () => {
    const before = await everything()
    const big = await main.a(['vm', 'create', '--language', 'python', '--mem', '1000000'])
    expect(big.code).not.toBe(0)
    expect(big.stderr).toMatch(/Unschedulable: .*Insufficient memory/)
    const o = k8sState('agent-k8s-unsched-')
    writeFileSync(join(o.st.dir, 'config.json'), JSON.stringify({kubernetes: {nodeSelector: {'agent.dev/pool': 'no-such-pool'}}}))
    const r = await o.a(['vm', 'create', '--language', 'python', '--mem', '128'])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/Unschedulable/)
    expect(r.stderr).toMatch(/node affinity\/selector/)
    expect(await waitUntil(async () => JSON.stringify(await everything()) === JSON.stringify(before), 30_000)).toBe(true)
  })

  it('an image the cluster cannot pull fails create with ErrImagePull/ImagePullBackOff and is rolled back', async () => {
    const before = await everything()
    const r = await main.a(['vm', 'create', '--language', 'python', '--mem', '128'], {env: {AGENT_K8S_IMAGE_PREFIX: 'registry.invalid/'}})
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/ErrImagePull|ImagePullBackOff/)
    expect(r.stderr).toContain('registry.invalid/')
    expect(await waitUntil(async () => JSON.stringify(await everything()) === JSON.stringify(before), 30_000)).toBe(true)
  })

  it('the cluster is the source of truth: with the database deleted, vm list finds the pods by label and clean --all removes them', async () => {
    const o = k8sState('agent-k8s-lost-')
    const r = await o.a(['vm', 'create', '--language', 'python', '--mem', '128'])
    expectOk(r)
    const id = r.stdout.trim()
    rmSync(join(o.st.dir, 'agent.db'))
    const list = await o.a(['vm', 'list', '--all', '--json'])
    expectOk(list)
    const found = (JSON.parse(list.stdout) as Array<{id: string; launcher: string; status: string}>).find((v) => v.id === id)
    expect(found).toMatchObject({launcher: 'kubernetes', status: 'running'})
    expect((await o.a(['vm', 'exec', '-v', id, '-c', 'echo still here'])).stdout).toBe('still here\n')
    rmSync(join(o.st.dir, 'agent.db'))
    expectOk(await o.a(['vm', 'clean', '--all']))
    const mine = {'agent.dev/vm': id}
    expect(await waitUntil(async () => (await podsOf(mine)).length + (await policiesOf(mine)).length === 0, 60_000)).toBe(true)
    // The other state dir's VM was not touched.
    expect(await podsOf({'agent.dev/vm': vm})).toHaveLength(1)
  })
})

describe('kubernetes launcher: agent doctor', () => {
  type Check = {id: string; ok: boolean; detail: string; fix?: string}
  const checks = async (env: Record<string, string>) => {
    const r = await main.a(['doctor', '--json'], {env})
    return (JSON.parse(r.stdout) as {checks: Check[]}).checks.filter((c) => c.id.startsWith('k8s'))
  }

  it('reports a reachable cluster, its namespace, the RuntimeClass and enough permissions', async () => {
    const c = await checks({})
    for (const id of ['k8s-cluster', 'k8s-namespace', 'k8s-runtime-class', 'k8s-permissions']) {
      expect(c.find((x) => x.id === id), `${id} in ${JSON.stringify(c)}`).toMatchObject({ok: true})
    }
  })

  it('reports an unreachable cluster with a fix', async () => {
    const file = join(main.st.dir, 'unreachable.kubeconfig')
    writeFileSync(file, kubeconfigText({server: `http://127.0.0.1:${await freePort()}`, token: 'x', namespace: cluster.namespace}))
    const c = await checks({AGENT_K8S_KUBECONFIG: file})
    const reach = c.find((x) => x.id === 'k8s-cluster')
    expect(reach, JSON.stringify(c)).toMatchObject({ok: false})
    expect(reach?.fix).toBeTruthy()
  })

  it('reports too few permissions (and vm create is refused with the cluster\'s 403, leaving nothing)', async () => {
    await cluster.withFewPermissions(async (kubeconfig) => {
      const c = await checks({AGENT_K8S_KUBECONFIG: kubeconfig})
      const perms = c.find((x) => x.id === 'k8s-permissions')
      expect(perms, JSON.stringify(c)).toMatchObject({ok: false})
      expect(perms?.detail).toMatch(/create/)
      expect(perms?.detail).toMatch(/pods/)
      const before = await everything()
      const r = await main.a(['vm', 'create', '--language', 'python', '--mem', '128'], {env: {AGENT_K8S_KUBECONFIG: kubeconfig}})
      expect(r.code).not.toBe(0)
      expect(r.stderr).toMatch(/forbidden/i)
      expect(await everything()).toEqual(before)
    })
  })
})

describe('kubernetes launcher: agent serve with the real e2b SDK', () => {
  const API_KEY = 'k8s-test-key-0123456789abcdef'
  let server: ServeChild | undefined

  afterAll(async () => {
    server?.proc.kill('SIGTERM')
    await server?.proc
  })

  it('Sandbox.create places a pod; commands.run, files.write/read work through it; kill removes the pod', async () => {
    const o = k8sState('agent-k8s-serve-')
    server = await startServe({port: await freePort(), env: o.env, apiKey: API_KEY})
    process.env.E2B_API_URL = server.url
    process.env.E2B_SANDBOX_URL = server.url
    process.env.E2B_API_KEY = API_KEY
    const E2B = await import('e2b')
    const sbx = await E2B.Sandbox.create('python', {timeoutMs: 300_000})
    const mine = {'agent.dev/vm': sbx.sandboxId}
    expect(await podsOf(mine), server.output()).toHaveLength(1)
    const r = await sbx.commands.run('echo out; echo err >&2; python3 -c "print(6*7)"')
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toBe('out\n42\n')
    expect(r.stderr).toBe('err\n')
    const failed = await sbx.commands.run('exit 3').catch((e: unknown) => e)
    expect(failed).toBeInstanceOf(E2B.CommandExitError)
    expect((failed as Any).exitCode).toBe(3)
    await sbx.files.write('/tmp/hello.txt', 'hello through the pod')
    expect(await sbx.files.read('/tmp/hello.txt')).toBe('hello through the pod')
    expect((await sbx.commands.run('cat /tmp/hello.txt')).stdout).toBe('hello through the pod')
    expect(await sbx.kill()).toBe(true)
    expect(await waitUntil(async () => (await podsOf(mine)).length === 0, 60_000)).toBe(true)
  })
})

describe('scripts/k8s-smoke.sh (the real-cluster run; not run in CI, only its guards are)', () => {
  const script = join(ROOT, 'scripts/k8s-smoke.sh')

  it('is shellcheck-clean', async () => {
    const r = await execa('shellcheck', [script], {reject: false})
    expect(r.exitCode, r.stdout).toBe(0)
  })

  it('stops before touching anything when the tool is unknown or missing, saying which and where to get it', async () => {
    const bogus = await execa('bash', [script], {reject: false, env: {K8S_SMOKE_TOOL: 'minikube'}})
    expect(bogus.exitCode).toBe(1)
    expect(bogus.stderr).toBe('k8s-smoke: K8S_SMOKE_TOOL must be kind or k3d (got minikube)')
    // A PATH holding only dirname: kind is missing, and nothing after the check runs.
    const bin = mkdtempSync(join(tmpdir(), 'k8s-smoke-path-'))
    try {
      symlinkSync('/usr/bin/dirname', join(bin, 'dirname'))
      const missing = await execa('/bin/bash', [script], {reject: false, extendEnv: false, env: {PATH: bin, HOME: bin}})
      expect(missing.exitCode).toBe(1)
      expect(missing.stderr).toMatch(/^k8s-smoke: kind is not installed \(https:\/\/kind\.sigs\.k8s\.io/)
    } finally {
      rmSync(bin, {recursive: true, force: true})
    }
  })
})
