import {execa} from 'execa'
import {existsSync, readdirSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {AGENT_BIN, agentIn, tempState} from '../helpers/agent.js'
import {waitUntil} from '../helpers/wait.js'

/** Session id and process group of a process (/proc/<pid>/stat fields 5 and 6), or undefined when gone. */
function sessionOf(pid: number): {pgrp: number; sid: number} | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return {pgrp: Number(f[2]), sid: Number(f[3])}
  } catch {
    return undefined
  }
}

/** Every process in a session, with its command line. */
function sessionMembers(sid: number): Array<{pid: number; cmd: string}> {
  const out: Array<{pid: number; cmd: string}> = []
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    if (sessionOf(Number(d))?.sid !== sid) continue
    let cmd = ''
    try {
      cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').join(' ').trim()
    } catch {
      continue
    }
    out.push({pid: Number(d), cmd})
  }
  return out
}

// Issue 17: a VM outlives the terminal, CI step or script that created it. `runsc run --detach`
// used to leave its gofer in the caller's session and process group, so a SIGHUP to the
// creator's group took the VM down; the sandbox and slirp4netns now start in sessions of their own.
describe.each(['gvisor', 'runc'] as const)('a VM outlives its creator\'s session on %s', (launcher) => {
  const st = tempState(`agent-survive-${launcher}-`)
  const env = {...st.env, AGENT_LAUNCHER: launcher}
  const a = agentIn(env)
  afterAll(async () => {
    await a(['vm', 'clean', '--all'])
    st.cleanup()
  })

  it('vm create inside `setsid bash -c`, then SIGHUP, SIGTERM and SIGKILL to that whole session: the VM still runs and execs', async () => {
    const idFile = join(st.dir, 'created-id')
    // The session leader stays (like a login shell) until it is killed with the rest of its session.
    const script = `${JSON.stringify(process.execPath)} ${JSON.stringify(AGENT_BIN)} vm create --language python --mem 128 --network allow_all > ${JSON.stringify(idFile)}.tmp 2>/dev/null && mv ${JSON.stringify(idFile)}.tmp ${JSON.stringify(idFile)}; exec sleep 600`
    const leader = execa('setsid', ['bash', '-c', script], {env: {...process.env, ...env}, reject: false, stdin: 'ignore', stdout: 'ignore', stderr: 'ignore', detached: false})
    let sid: number | undefined
    expect(await waitUntil(() => existsSync(idFile), 120_000), 'vm create did not finish in the setsid session').toBe(true)
    const id = readFileSync(idFile, 'utf8').trim()
    expect(id).toMatch(/^python-[0-9a-f]{8}$/)
    // setsid forks when it is a group leader: find the session by the bash that runs `sleep`.
    expect(await waitUntil(() => {
      for (const d of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
        try {
          if (readFileSync(`/proc/${d}/cmdline`, 'utf8').startsWith('sleep\x00600') && readFileSync(`/proc/${d}/environ`, 'utf8').includes(`AGENT_STATE_DIR=${st.dir}\0`)) {
            sid = sessionOf(Number(d))?.sid
            return true
          }
        } catch {
          // gone or not ours
        }
      }
      return false
    }, 30_000), 'the session leader is gone').toBe(true)
    expect(sid).toBeGreaterThan(1)
    const members = sessionMembers(sid!)
    // Nothing of the VM (runsc sandbox or gofer, runc's init, slirp4netns) is in the creator's session.
    expect(members.map((m) => m.cmd).filter((c) => /runsc|runc|slirp4netns|agent-init/.test(c))).toEqual([])
    for (const sig of ['SIGHUP', 'SIGTERM', 'SIGKILL'] as const) {
      for (const m of sessionMembers(sid!)) {
        try {
          process.kill(-(sessionOf(m.pid)?.pgrp ?? m.pid), sig)
        } catch {
          // group gone
        }
        try {
          process.kill(m.pid, sig)
        } catch {
          // gone
        }
      }
      await new Promise((r) => setTimeout(r, 300))
    }
    expect(await waitUntil(() => sessionMembers(sid!).length === 0, 10_000), 'the creator\'s session is not dead').toBe(true)
    await leader
    await new Promise((r) => setTimeout(r, 1000))

    const list = JSON.parse((await a(['vm', 'list', '--json'])).stdout) as Array<{id: string; status: string}>
    expect(list.find((v) => v.id === id)?.status).toBe('running')
    const r = await a(['vm', 'exec', '--vm', id, '--cmd', 'echo survived; cat /etc/resolv.conf'])
    expect(r.stderr).toBe('')
    expect(r.stdout).toBe('survived\nnameserver 10.0.2.3\n')
    // slirp4netns (allow_all) survived too.
    const pid = Number(readFileSync(join(st.dir, 'vms', id, 'slirp.pid'), 'utf8').trim())
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toMatch(/^slirp4netns\0/)
  })
})
