import {existsSync} from 'node:fs'
import {OciLauncher} from './oci.js'

/** runc: plain namespaces + cgroups + seccomp. Fastest, weakest isolation (shared host kernel). */
export class RuncLauncher extends OciLauncher {
  constructor(bin = process.env.AGENT_RUNC ?? 'runc') {
    super({
      name: 'runc',
      summary: 'plain containers, the weakest isolation',
      bin,
      binEnv: 'AGENT_RUNC',
      spec: 'runc',
      oomKillsSandbox: false,
      globalArgs: (root: string) => ['--root', root],
      hostMemoryMib: (vm) => vm.memoryMib,
      hostPids: (vm) => vm.pids,
      fix: 'apt-get install runc',
      hostCheck: () =>
        existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes') || existsSync('/sys/fs/cgroup/cgroup.controllers')
          ? undefined
          : 'no cgroup memory controller mounted at /sys/fs/cgroup',
    })
  }
}
