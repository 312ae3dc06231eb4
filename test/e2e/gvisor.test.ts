import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {DEFAULT_GVISOR_PLATFORM} from '../../packages/cli/src/launchers/gvisor-version.js'
import {vmForTests} from '../helpers/agent.js'

// Issue 21: the first commands a new user types work in a default gVisor VM (runsc 0.0~20221219
// failed every coreutils statx with EINVAL: "ls: cannot access '/': Invalid argument").
describe('a default gVisor VM', () => {
  let id = ''
  const {st, a} = vmForTests({prefix: 'agent-gvisor-', launcher: 'gvisor', onCreate: (v) => (id = v)})

  it('ls -la /: every entry, nothing on stderr', async () => {
    const r = await a(['vm', 'exec', '--vm', id, '--cmd', 'ls -la /'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^total \d+\n/)
    for (const name of ['etc', 'usr', 'tmp', 'in', 'out', 'bin -> usr/bin']) expect(r.stdout).toMatch(new RegExp(` ${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n`))
  })

  it('stat', async () => {
    const r = await a(['vm', 'exec', '--vm', id, '--cmd', 'echo hi > /tmp/f && stat -c "%n %s %F" /tmp/f / /bin && stat /etc/hostname'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^\/tmp\/f 3 regular file\n\/ \d+ directory\n\/bin \d+ symbolic link\n  File: \/etc\/hostname\n/)
  })

  it('find', async () => {
    const r = await a(['vm', 'exec', '--vm', id, '--cmd', 'find / -xdev -maxdepth 2 -name passwd -type f; find /usr/bin -type f | wc -l'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const [first, count] = r.stdout.trim().split('\n')
    expect(first).toBe('/etc/passwd')
    expect(Number(count)).toBeGreaterThan(50)
  })

  it('du', async () => {
    const r = await a(['vm', 'exec', '--vm', id, '--cmd', 'head -c 1048576 /dev/zero > /tmp/mb && du -k /tmp/mb && du -sk /usr'])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const [file, usr] = r.stdout.trim().split('\n').map((l) => Number(l.split('\t')[0]))
    expect(file).toBeGreaterThanOrEqual(1024)
    expect(usr).toBeGreaterThan(10_000)
  })

  it(`boots with the default platform (${DEFAULT_GVISOR_PLATFORM}), recorded so that vm start boots it the same way`, async () => {
    expect(readFileSync(join(st.dir, 'vms', id, 'gvisor-platform'), 'utf8').trim()).toBe(DEFAULT_GVISOR_PLATFORM)
    expect((await a(['vm', 'stop', id])).code).toBe(0)
    // A different platform in the environment does not change an existing VM.
    const other = DEFAULT_GVISOR_PLATFORM === 'ptrace' ? 'systrap' : 'ptrace'
    const s = await a(['vm', 'start', id], {env: {AGENT_GVISOR_PLATFORM: other}})
    expect(s.code, s.stderr).toBe(0)
    expect(readFileSync(join(st.dir, 'vms', id, 'gvisor-platform'), 'utf8').trim()).toBe(DEFAULT_GVISOR_PLATFORM)
    const r = await a(['vm', 'exec', '--vm', id, '--cmd', 'ls / >/dev/null && echo ok'])
    expect(r.stdout).toBe('ok\n')
  })
})
