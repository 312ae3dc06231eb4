#!/usr/bin/env node
// Soak: N cycles of create, exec, clean per launcher, counting what a VM can leak on the host
// before and after. NOT part of npm test (it takes long). Usage, after `npm run build`, as root:
//
//   node test/bench/soak.mjs [--cycles 200] [--launchers gvisor,runc] [--network allow:allowed.test]
//
// Each cycle: vm create --language python --mem 64 --network <net> --persist --persist-size 16,
// one exec, vm clean. The VMs get an egress netns (slirp4netns, nft rules, and with an allow list
// of domains a filtering DNS) and a /persist image, so every kind of leftover can show. No traffic
// leaves the VM: the exec only writes a file. Prints a JSON report and a markdown table.
import {spawnSync} from 'node:child_process'
import {mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, existsSync} from 'node:fs'
import {join, dirname} from 'node:path'
import {fileURLToPath} from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const AGENT = join(ROOT, 'packages/cli/bin/run.js')
const args = process.argv.slice(2)
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : dflt
}
const CYCLES = Number(opt('cycles', '200'))
const LAUNCHERS = opt('launchers', 'gvisor,runc').split(',')
const NETWORK = opt('network', 'allow:allowed.test')
const STORE = process.env.AGENT_TEST_IMAGE_STORE ?? '/var/tmp/agent-test-images'

const sh = (bin, a) => spawnSync(bin, a, {encoding: 'utf8', env: {...process.env, CONTAINERS_STORAGE_CONF: join(STORE, 'storage.conf')}}).stdout ?? ''
const procs = () => readdirSync('/proc').filter((d) => /^\d+$/.test(d))
const cmdlines = () =>
  procs().map((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' ')
    } catch {
      return ''
    }
  })

function counts(state, ids = []) {
  const mine = (x) => x.includes(state) || ids.some((id) => x.includes(id))
  const cmds = cmdlines()
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
  const cg = []
  for (const c of readdirSync('/sys/fs/cgroup')) {
    const d = join('/sys/fs/cgroup', c, 'agent')
    if (existsSync(d)) cg.push(...readdirSync(d, {withFileTypes: true}).filter((e) => e.isDirectory()).map((e) => `${c}/${e.name}`))
  }
  const fs = statfsSync(state)
  return {
    // Whole host: other users' VMs and test runs move it; the soak's own are the next lines.
    hostProcessesAll: procs().length,
    soakProcesses: cmds.filter(mine).length,
    agentHelpers: cmds.filter((c) => mine(c) && /slirp4netns|dnsmasq|runsc|runc|conmon/.test(c)).length,
    mounts: mounts.filter((l) => l.includes(state)).length,
    loopDevices: sh('losetup', ['-a', '-n', '-O', 'BACK-FILE']).split('\n').filter((l) => l.includes(state)).length,
    cgroupsAll: cg.length,
    soakCgroups: cg.filter((c) => ids.some((id) => c.endsWith(`/${id}`))).length,
    buildahContainersAll: sh('buildah', ['containers', '--format', '{{.ContainerName}}']).split('\n').filter((n) => n.startsWith('agent-')).length,
    soakBuildahContainers: sh('buildah', ['containers', '--format', '{{.ContainerName}}']).split('\n').filter((n) => ids.some((id) => n === `agent-${id}`)).length,
    netnsFiles: readdirSync(join(state, 'vms')).filter((id) => existsSync(join(state, 'vms', id, 'netns'))).length,
    vmDirs: readdirSync(join(state, 'vms')).length,
    persistDirs: readdirSync(join(state, 'persist')).length,
    stateDirKiB: Number(sh('du', ['-sk', '-x', state]).split('\t')[0]),
    freeMiB: Math.round((fs.bavail * fs.bsize) / 1024 / 1024),
  }
}

function agent(env, a) {
  const r = spawnSync(process.execPath, [AGENT, ...a], {env: {...process.env, ...env, NO_COLOR: '1'}, encoding: 'utf8', timeout: 300_000})
  return {code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? ''}
}

const report = {cycles: CYCLES, network: NETWORK, launchers: {}}
for (const launcher of LAUNCHERS) {
  const state = mkdtempSync(`/var/tmp/agent-soak-${launcher}-`)
  const env = {AGENT_STATE_DIR: state, AGENT_IMAGE_STORE: STORE, AGENT_LAUNCHER: launcher, CONTAINERS_STORAGE_CONF: join(STORE, 'storage.conf')}
  agent(env, ['vm', 'list']) // makes the state dir's layout
  const before = counts(state)
  const failures = []
  const ids = []
  const t0 = Date.now()
  const times = []
  for (let i = 0; i < CYCLES; i++) {
    const c0 = Date.now()
    const c = agent(env, ['vm', 'create', '--language', 'python', '--mem', '64', '--network', NETWORK, '--persist', '--persist-size', '16'])
    const id = c.stdout.trim()
    if (id) ids.push(id)
    if (c.code !== 0) {
      failures.push(`cycle ${i} create: ${c.stderr.trim().split('\n').at(-1)}`)
      continue
    }
    const e = agent(env, ['vm', 'exec', '--vm', id, '--cmd', `echo ${i} > /persist/n && cat /persist/n`])
    if (e.code !== 0 || e.stdout.trim() !== String(i)) failures.push(`cycle ${i} exec: ${e.code} ${e.stderr.trim().split('\n').at(-1)}`)
    const k = agent(env, ['vm', 'clean', id])
    if (k.code !== 0) failures.push(`cycle ${i} clean: ${k.stderr.trim().split('\n').at(-1)}`)
    times.push(Date.now() - c0)
    if ((i + 1) % 10 === 0) process.stderr.write(`soak ${launcher}: ${i + 1}/${CYCLES} cycles, ${failures.length} failures\n`)
  }
  const after = counts(state, ids)
  times.sort((x, y) => x - y)
  report.launchers[launcher] = {
    before,
    after,
    failures,
    minutes: Math.round((Date.now() - t0) / 600) / 100,
    cycleMs: {median: times[Math.floor(times.length / 2)], p95: times[Math.floor(times.length * 0.95)], max: times.at(-1)},
  }
  agent(env, ['vm', 'clean', '--all'])
  if (!readFileSync('/proc/self/mountinfo', 'utf8').includes(state)) rmSync(state, {recursive: true, force: true})
}

console.log(JSON.stringify(report, null, 2))
const keys = Object.keys(Object.values(report.launchers)[0]?.before ?? {})
console.log(`\n| count | ${LAUNCHERS.map((l) => `${l} before | ${l} after`).join(' | ')} |`)
console.log(`|---|${LAUNCHERS.map(() => '---|---').join('|')}|`)
for (const k of keys) console.log(`| ${k} | ${LAUNCHERS.map((l) => `${report.launchers[l].before[k]} | ${report.launchers[l].after[k]}`).join(' | ')} |`)
process.exitCode = Object.values(report.launchers).some((r) => r.failures.length) ? 1 : 0
