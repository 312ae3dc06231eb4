import {execa, type ResultPromise} from 'execa'
import type {Server} from 'node:http'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, beforeAll, describe, expect, it} from 'vitest'
import {agentIn, tempState} from '../helpers/agent.js'
import {cleanVms, createVm, LAUNCHERS, listen, makeTestHost, parseProbe, portOf, probeScript, rand, removeStateDir, type TestHost} from './helpers.js'


/** A guest script: a raw DNS query (A record) to a server, printing "dns <server> OK <ip>" or "dns <server> FAIL <why>". */
function dnsProbe(name: string, server: string): string {
  return `import socket, struct
q = struct.pack('>HHHHHH', 0x4147, 0x0100, 1, 0, 0, 0) + b''.join(bytes([len(p)]) + p.encode() for p in ${JSON.stringify(name)}.split('.')) + b'\\0' + struct.pack('>HH', 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
try:
    s.sendto(q, (${JSON.stringify(server)}, 53))
    d = s.recv(512)
    print("dns", ${JSON.stringify(server)}, "OK" if struct.unpack('>H', d[6:8])[0] else "FAIL", "rcode", d[3] & 15)
except Exception as e:
    print("dns", ${JSON.stringify(server)}, "FAIL", type(e).__name__)
`
}

// Traffic goes ONLY to test hosts this file builds in network namespaces joined by veth pairs
// (their routes are checked to go through the veth before anything is sent) and to the host's own
// veth addresses. "Public" test hosts use 203.0.113.0/24 (TEST-NET-3, never routed on the internet),
// a link-local one 169.254.N.0/30 (never 169.254.169.254: the host's own metadata route stays
// untouched) and a CGNAT one 100.64.N.0/30. Under --network allow:DOMAINS the VM's DNS asks a test
// DNS server in one of these namespaces (AGENT_EGRESS_DNS), never the host's resolvers.
describe('egress policy', () => {
  const n = () => 1 + (parseInt(rand(1), 16) % 200)
  let privA: TestHost // 10.232.N.2: private, opened by a hole or an allow-list CIDR
  let privB: TestHost // 10.232.N.6: private, never opened
  let linkLocal: TestHost
  let cgnat: TestHost
  let pubP: TestHost // 203.0.113.6: "public", allowed by name
  let pubQ: TestHost // 203.0.113.10: "public", not listed; it runs the test DNS server
  let dns: ResultPromise | undefined
  let onHostVeth: Server // a host service on the host's own (public-looking) address 203.0.113.5
  const hostBody = `host-service-${rand(4)}`

  beforeAll(async () => {
    const p = `10.232.${n()}`
    privA = await makeTestHost({prefix: p, slot: 0})
    privB = await makeTestHost({prefix: p, slot: 1})
    let ll = n()
    if (ll === 169) ll = 170
    linkLocal = await makeTestHost({prefix: `169.254.${ll}`, slot: 0})
    cgnat = await makeTestHost({prefix: `100.64.${n()}`, slot: 0})
    pubP = await makeTestHost({prefix: '203.0.113', slot: 1})
    pubQ = await makeTestHost({prefix: '203.0.113', slot: 2})
    onHostVeth = await listen(pubP.hostIp, hostBody)
    dns = execa(
      'nsenter',
      [
        `--net=/run/netns/${pubQ.ns}`,
        'dnsmasq',
        '--keep-in-foreground',
        '--conf-file=/dev/null',
        '--no-resolv',
        '--no-hosts',
        '--bind-interfaces',
        `--listen-address=${pubQ.nsIp}`,
        '--user=nobody',
        '--group=nogroup',
        '--pid-file=',
        `--address=/allowed.test/${pubP.nsIp}`,
        `--address=/rebind.test/${privA.nsIp}`,
        `--address=/other.test/${pubQ.nsIp}`,
      ],
      {reject: false, stdin: 'ignore', buffer: false},
    )
    // dnsmasq binds before it answers; a query from the host's namespace is sent to the test host only.
    let up = false
    for (let i = 0; i < 50 && !up; i++) {
      const r = await execa('nsenter', [`--net=/run/netns/${pubQ.ns}`, 'python3', '-c', dnsProbe('allowed.test', pubQ.nsIp)], {reject: false})
      up = String(r.stdout).includes('OK')
      if (!up) await new Promise((res) => setTimeout(res, 100))
    }
    expect(up, 'test DNS server in the namespace of 203.0.113.10').toBe(true)
  })
  afterAll(async () => {
    if (dns?.pid) process.kill(dns.pid, 'SIGKILL')
    await dns?.catch(() => undefined)
    onHostVeth?.close()
    for (const h of [privA, privB, linkLocal, cgnat, pubP, pubQ]) await h?.cleanup()
  })

  describe.each(LAUNCHERS)('on %s', (launcher) => {
    const st = tempState(`agent-sec-egress-${launcher}-`)
    const a = agentIn({...st.env, AGENT_RUNTIME: launcher})
    const url = (h: TestHost) => `http://${h.nsIp}:${h.port}/`
    let hostUrl: string

    beforeAll(() => {
      hostUrl = `http://${pubP.hostIp}:${portOf(onHostVeth)}/`
      const all = [url(pubP), url(pubQ), url(privA), url(privB), url(linkLocal), url(cgnat), hostUrl, `http://10.0.2.2:${portOf(onHostVeth)}/`, `http://${privA.hostIp}:${portOf(onHostVeth)}/`]
      writeFileSync(join(st.dir, 'probe.py'), probeScript(all))
      writeFileSync(join(st.dir, 'names.py'), probeScript([`http://allowed.test:${pubP.port}/`, `http://other.test:${pubQ.port}/`, `http://rebind.test:${privA.port}/`, url(pubQ), url(pubP)]))
      writeFileSync(join(st.dir, 'dns.py'), dnsProbe('allowed.test', pubQ.nsIp))
    })
    afterAll(async () => {
      await cleanVms(a, st.dir)
      removeStateDir(st.dir)
    })

    async function run(id: string, script: string): Promise<string> {
      const r = await a(['vm', 'run', '--vm', id, '--file', join(st.dir, script), '--timeout', '90'])
      expect(r.code, r.stderr).toBe(0)
      return r.stdout
    }

    it('allow_all reaches a public address, but no private, link-local, CGNAT or host address', async () => {
      const id = await createVm(a, ['--mem', '64', '--network', 'allow_all'])
      const res = parseProbe(await run(id, 'probe.py'))
      expect(res[url(pubP)]).toBe(`OK ${pubP.body}`)
      expect(res[url(pubQ)]).toBe(`OK ${pubQ.body}`)
      expect(res[url(privA)]).toBe('FAIL') // RFC 1918
      expect(res[url(privB)]).toBe('FAIL')
      expect(res[url(linkLocal)]).toBe('FAIL') // 169.254/16 (metadata)
      expect(res[url(cgnat)]).toBe('FAIL') // 100.64/10
      expect(res[hostUrl]).toBe('FAIL') // the host's own address, public-looking as it is
      expect(res[`http://${privA.hostIp}:${portOf(onHostVeth)}/`]).toBe('FAIL')
      expect(res[`http://10.0.2.2:${portOf(onHostVeth)}/`]).toBe('FAIL') // slirp's gateway: the host
      const list = await a(['vm', 'list', '--json'])
      expect((JSON.parse(list.stdout) as Array<{id: string; network: string; egressAllow: unknown; allowHosts: unknown}>).find((v) => v.id === id)).toMatchObject({network: 'allow_all', egressAllow: null, allowHosts: null})
    })

    it('--allow-host opens a hole to one private address and port and to the host\'s own address, nothing else', async () => {
      const id = await createVm(a, ['--mem', '64', '--network', 'allow_all', '--allow-host', `${privA.nsIp}:${privA.port}`, '--allow-host', `${pubP.hostIp}:${portOf(onHostVeth)}`])
      const res = parseProbe(await run(id, 'probe.py'))
      expect(res[url(privA)]).toBe(`OK ${privA.body}`)
      expect(res[hostUrl]).toBe(`OK ${hostBody}`)
      expect(res[url(pubP)]).toBe(`OK ${pubP.body}`)
      expect(res[url(privB)]).toBe('FAIL')
      expect(res[url(linkLocal)]).toBe('FAIL')
      expect(res[url(cgnat)]).toBe('FAIL')
      expect(res[`http://10.0.2.2:${portOf(onHostVeth)}/`]).toBe('FAIL')
      const table = await a(['vm', 'list'])
      expect(table.stdout).toContain(`allow_all +host ${privA.nsIp}:${privA.port},${pubP.hostIp}:${portOf(onHostVeth)}`)
    })

    it('an allow list of one CIDR lets that test host through and refuses another, private or public', async () => {
      const id = await createVm(a, ['--mem', '64', '--network', `allow:${privA.nsIp}/30`])
      const res = parseProbe(await run(id, 'probe.py'))
      expect(res[url(privA)]).toBe(`OK ${privA.body}`)
      expect(res[url(privB)]).toBe('FAIL')
      expect(res[url(pubP)]).toBe('FAIL')
      expect(res[url(pubQ)]).toBe('FAIL')
      expect(res[hostUrl]).toBe('FAIL')
      const list = await a(['vm', 'list', '--json'])
      expect((JSON.parse(list.stdout) as Array<{id: string}>).find((v) => v.id === id)).toMatchObject({network: 'allow', egressAllow: [`${privA.nsIp.replace(/\.\d+$/, '.0')}/30`]})
    })

    it('an allow list of domains: a listed name is reached, an unlisted one is refused, a listed name resolving to a private address is refused, and the guest cannot ask the upstream DNS itself', async () => {
      // The VM's filtering DNS asks the test DNS server (in pubQ's namespace), never the host's resolvers.
      const c = await a(['vm', 'create', '--language', 'python', '--mem', '64', '--network', 'allow:allowed.test,rebind.test'], {env: {AGENT_EGRESS_DNS: pubQ.nsIp}})
      expect(c.code, c.stderr).toBe(0)
      const id = c.stdout.trim()
      const res = parseProbe(await run(id, 'names.py'))
      expect(res[`http://allowed.test:${pubP.port}/`]).toBe(`OK ${pubP.body}`)
      expect(res[`http://other.test:${pubQ.port}/`]).toBe('FAIL') // the filtering DNS refuses the name
      expect(res[`http://rebind.test:${privA.port}/`]).toBe('FAIL') // resolves, to a private address: refused
      expect(res[url(pubQ)]).toBe('FAIL') // by address
      expect(res[url(pubP)]).toBe(`OK ${pubP.body}`) // what allowed.test resolved to
      // Refused by the filter (the server answers anyone else): only the filtering DNS's marked queries pass.
      expect((await run(id, 'dns.py')).trim()).toMatch(new RegExp(`^dns ${pubQ.nsIp.replace(/\./g, '\\.')} FAIL`))
      const table = await a(['vm', 'list'])
      expect(table.stdout).toContain('allow:allowed.test,rebind.test')
    }, 240_000)

    it('--network none is unchanged: only lo, nothing reachable', async () => {
      const id = await createVm(a, ['--mem', '64', '--network', 'none'])
      const res = parseProbe(await run(id, 'probe.py'))
      expect(Object.values(res).every((v) => v === 'FAIL'), JSON.stringify(res)).toBe(true)
      const ifs = await a(['vm', 'exec', '--vm', id, '--cmd', 'cat /proc/net/dev'])
      expect(ifs.stdout.split('\n').filter((l) => l.includes(':')).map((l) => l.split(':')[0]!.trim()).filter((x) => x !== 'lo')).toEqual([])
      const bad = await a(['vm', 'create', '--language', 'python', '--network', 'none', '--allow-host', `${privA.nsIp}:80`])
      expect(bad.code).toBe(2)
      expect(bad.stderr).toMatch(/--allow-host needs a network/)
    })
  })
})
