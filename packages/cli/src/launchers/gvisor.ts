import type {VmRecord} from '../state/vm-record.js'
import {OciLauncher} from './oci.js'

/**
 * Sentry + gofer overhead charged to the sandbox's host cgroup on top of the guest's own memory
 * (measured ~30-40 MiB idle on runsc 20221219/ptrace); without it a 64 MiB VM would get ~25 MiB.
 */
export const GVISOR_MEMORY_OVERHEAD_MIB = 64

/**
 * gVisor (runsc, ptrace platform: no KVM needed). Release 20221219 notes, found by experiment:
 *  - --network=sandbox refuses every namespace on kernels >= 6.x ("cannot run with network enabled
 *    in root network namespace": its root-ns probe, /proc/sys/net/core/rmem_default, became
 *    per-namespace). allow_all therefore uses --network=host *inside* the VM's own slirp4netns
 *    namespace (the spec's network path): host-kernel sockets, but only tap0 and lo to see.
 *  - pids: on ptrace every guest task costs ~5-10 host threads (stub processes), and hitting the
 *    host pids cgroup panics the sentry. This runsc enforces neither RLIMIT_NPROC nor an in-sandbox
 *    pids cgroup, so --pids is NOT enforced per guest process: the host limit is only a safety net
 *    for the host. A fork bomb ends with the sandbox killed (host OOM of the sentry or pids panic);
 *    the VM shows as stopped and start() brings it back with its files.
 *  - --overlay2=none: guest writes go to our overlay on the bounded disk, not to sentry memory.
 */
export class GvisorLauncher extends OciLauncher {
  constructor(bin = process.env.AGENT_RUNSC ?? 'runsc') {
    super({
      name: 'gvisor',
      bin,
      spec: 'runsc',
      globalArgs: (root: string, vm?: VmRecord) => {
        const args = ['--root', root, '--platform=ptrace', '--overlay2=none']
        if (vm) args.push(`--network=${vm.network === 'allow_all' ? 'host' : 'none'}`)
        return args
      },
      hostMemoryMib: (vm) => vm.memoryMib + GVISOR_MEMORY_OVERHEAD_MIB,
      hostPids: (vm) => Math.max(8192, vm.pids * 64),
      fix: 'apt-get install runsc',
    })
  }
}
