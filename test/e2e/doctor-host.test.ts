// `agent doctor --json` on the e2e host (root, runsc, runc, buildah, slirp4netns: what the e2e
// project needs anyway). Unit tests of doctor use fakes and stand-ins; this is what this host
// really has. Both answers to the KVM question are asserted, so nothing depends on a skip.
import {existsSync} from 'node:fs'
import {afterAll, describe, expect, it} from 'vitest'
import {agent, tempState} from '../helpers/agent.js'

interface Row {
  name: string
  ok: boolean
  reason?: string
}
interface Check {
  id: string
  ok: boolean
  detail: string
}

describe('agent doctor on this host', () => {
  const st = tempState('agent-doctor-host-')
  afterAll(() => st.cleanup())

  it('gvisor and runc are usable, every check they need passes, and the default follows krunvm, gvisor, runc', async () => {
    const r = await agent(['doctor', '--json'], {env: {...st.env, AGENT_RUNTIME: undefined, AGENT_KRUNVM_ASSUME_HYPERVISOR: undefined, KUBECONFIG: '/nonexistent/kubeconfig', AGENT_K8S_KUBECONFIG: undefined, KUBERNETES_SERVICE_HOST: undefined}})
    expect(r.code, r.stderr).toBe(0)
    const doc = JSON.parse(r.stdout) as {ok: boolean; defaultLauncher: string; defaultReason: string; launchers: Row[]; checks: Check[]}
    const by = (n: string) => doc.launchers.find((l) => l.name === n)!
    expect(doc.launchers.map((l) => l.name)).toEqual(['krunvm', 'gvisor', 'runc', 'kubernetes'])
    // Listed, never a default; with no kubeconfig it says what is missing.
    expect(by('kubernetes')).toMatchObject({ok: false, reason: expect.stringMatching(/kubeconfig \/nonexistent\/kubeconfig/)})
    expect(by('gvisor'), JSON.stringify(by('gvisor'))).toMatchObject({ok: true})
    expect(by('runc'), JSON.stringify(by('runc'))).toMatchObject({ok: true})
    expect(doc.ok).toBe(true)
    if (by('krunvm').ok) {
      expect(existsSync('/dev/kvm')).toBe(true)
      expect(doc.defaultLauncher).toBe('krunvm')
    } else {
      expect(doc.defaultLauncher).toBe('gvisor')
      expect(doc.defaultReason).toMatch(/^krunvm is not usable \(.+\); gvisor is usable/)
    }
    for (const id of ['state-dir', 'runsc', 'runc', 'buildah', 'slirp4netns', 'cgroups', 'image-storage']) {
      const c = doc.checks.find((x) => x.id === id)
      expect(c, `check ${id} missing`).toBeDefined()
      expect(c!.ok, `${id}: ${c!.detail}`).toBe(true)
    }
  })
})
