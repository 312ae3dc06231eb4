import {statSync} from 'node:fs'
import {join} from 'node:path'
import {afterAll, describe, expect, it} from 'vitest'
import {agentIn, tempState} from '../helpers/agent.js'
import {allocatedBytes, Bystander, cleanVms, createVm, hostLeftovers, LAUNCHERS, removeStateDir} from './helpers.js'

const MiB = 1024 * 1024

describe.each(LAUNCHERS)('bounded /persist on %s', (launcher) => {
  const st = tempState(`agent-sec-persist-${launcher}-`)
  const a = agentIn({...st.env, AGENT_RUNTIME: launcher})
  const bystander = new Bystander(a)
  afterAll(async () => {
    await cleanVms(a, st.dir)
    removeStateDir(st.dir)
  })

  it('fills to its --persist-size, then ENOSPC; the host holds at most the limit; the VM and a bystander are unharmed', async () => {
    await bystander.create()
    const id = await createVm(a, ['--mem', '64', '--persist', '--persist-size', '32'])
    const before = allocatedBytes(st.dir)
    const r = await a([
      'vm', 'exec', '--vm', id, '--timeout', '120', '--cmd',
      'echo keep > /persist/keep.txt; dd if=/dev/zero of=/persist/fill bs=1M count=100; echo dd=$?; sync; df -k /persist | tail -1',
    ])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/dd=1/)
    expect(r.stderr).toMatch(/dd: error writing '\/persist\/fill': No space left on device/)
    // The guest sees a file system of ~32 MiB (ext4 keeps a little for itself), not the host's.
    const total = Number(r.stdout.trim().split('\n').at(-1)!.split(/\s+/)[1])
    expect(total).toBeGreaterThan(20 * 1024)
    expect(total).toBeLessThanOrEqual(32 * 1024)
    const img = statSync(join(st.dir, 'persist', id, 'persist.img'))
    expect(img.size).toBe(32 * MiB)
    expect(img.blocks * 512).toBeLessThanOrEqual(32 * MiB)
    const after = allocatedBytes(st.dir)
    expect(after - before, `host usage of the state dir grew by ${((after - before) / MiB).toFixed(0)} MiB`).toBeLessThanOrEqual(32 * MiB)
    // Freed space is usable again; the rest of the VM never noticed.
    const again = await a(['vm', 'exec', '--vm', id, '--cmd', 'rm /persist/fill && echo more > /persist/more.txt && cat /persist/keep.txt /persist/more.txt && echo $((6*7))'])
    expect(again.stdout).toBe('keep\nmore\n42\n')
    await bystander.expectUnaffected()
    const list = await a(['vm', 'list', '--json'])
    expect((JSON.parse(list.stdout) as Array<{id: string}>).find((v) => v.id === id)).toMatchObject({persist: true, persistMib: 32})

    // Kept by clean --keep-persist (the image, unmounted), attached again with its size by --persist-from.
    const c = await a(['vm', 'clean', id, '--keep-persist'])
    expect(c.code, c.stderr).toBe(0)
    // (Only this VM's: the bystander's disk is mounted under the same state dir.)
    expect(await hostLeftovers(join(st.dir, 'vms', id), [id])).toMatchObject({mounts: [], loops: []})
    const wrongSize = await a(['vm', 'create', '--language', 'python', '--persist-from', id, '--persist-size', '64'])
    expect(wrongSize.code).toBe(2)
    expect(wrongSize.stderr).toMatch(/is 32 MiB and keeps that size/)
    const id2 = await createVm(a, ['--mem', '64', '--persist-from', id])
    const back = await a(['vm', 'exec', '--vm', id2, '--cmd', 'cat /persist/keep.txt; df -k /persist | tail -1'])
    expect(back.stdout.split('\n')[0]).toBe('keep')
    expect(Number(back.stdout.split('\n')[1]!.split(/\s+/)[1])).toBe(total)
    const gone = await a(['vm', 'clean', id2])
    expect(gone.code, gone.stderr).toBe(0)
    expect(await hostLeftovers(join(st.dir, 'vms', id2), [id, id2])).toMatchObject({mounts: [], loops: []})
  })

  it('--persist-size without --persist is a usage error; so is a size out of range', async () => {
    const r = await a(['vm', 'create', '--language', 'python', '--persist-size', '64'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/--persist-size needs --persist/)
    const small = await a(['vm', 'create', '--language', 'python', '--persist', '--persist-size', '8'])
    expect(small.code).toBe(2)
    expect(small.stderr).toMatch(/--persist-size must be a whole number of MiB from 16/)
  })
})
