/**
 * Telling krunvm's own failures from the guest's, and turning them into AgentErrors that carry
 * krunvm's message. krunvm 0.2.6 prints its own errors on stdout and exits 255; clap argument
 * errors go to stderr with exit 2; a Rust panic exits 101.
 */
import {AgentError, conflict, unavailable} from '../../errors.js'
import {lastLines} from '../../system/index.js'

/** The messages krunvm 0.2.6 prints (on stdout) before exiting 255. */
const KRUNVM_MESSAGE =
  /^(No VM found with|Couldn't acquire lock file|Error (starting VM|setting VM|creating directory|mounting volume|executing buildah)|buildah returned an error|krunvm requires buildah|Please re-run krunvm|A VM with this name already exists|Invalid |The volume has been configured|Please enter the mountpoint)/

/** Without a guest marker: does this exit look like krunvm's own failure rather than the guest's? */
export function looksLikeKrunvmFailure(code: number, stdout: string, stderr: string): boolean {
  const lastOut = lastLines(stdout, 1)
  if (code === 255 && KRUNVM_MESSAGE.test(lastOut)) return true
  if (code === 101 && /panicked at/.test(stderr)) return true
  if (code === 2 && /(^|\n)error: [\s\S]*Usage: krunvm /.test(stderr)) return true
  return false
}

/** Maps a failed krunvm call to an AgentError that carries krunvm's own message. */
export function krunvmFailure(what: string, code: number, stdout: string, stderr: string, vmId?: string): AgentError {
  const text = (code === 255 ? lastLines(stdout) || lastLines(stderr) : lastLines(stderr) || lastLines(stdout)) || 'no output'
  if (/Couldn't acquire lock file/.test(stdout)) {
    return conflict(`VM ${vmId ?? '?'} is busy running another command (krunvm: ${text})`, vmId ? `wait for it to finish, or stop it with \`agent vm stop ${vmId}\`` : undefined)
  }
  if (/No VM found with/.test(stdout)) {
    return new AgentError('not_found', `${what} failed: krunvm: ${text}`, {hint: vmId ? `clean it with \`agent vm clean ${vmId}\`` : undefined})
  }
  if (code === 101 || /panicked at/.test(stderr)) {
    return new AgentError('internal', `${what} failed: krunvm crashed (exit ${code}): ${text}`, {hint: 'run again with --log-level debug; this is a krunvm bug'})
  }
  if (code === 2 && /Usage: krunvm/.test(stderr)) {
    return new AgentError('internal', `${what} failed: krunvm rejected its arguments: ${text}`)
  }
  if (/macOS, krunvm requires a dedicated|Please enter the mountpoint/.test(stdout)) {
    return unavailable(`${what} failed: krunvm has no storage volume configured`, 'run scripts/macos/setup.sh')
  }
  if (/Please re-run krunvm inside/.test(stdout)) {
    return unavailable(`${what} failed: krunvm: ${text}`, 'run agent as root, or inside `buildah unshare`')
  }
  return unavailable(`${what} failed (krunvm exit ${code}): ${text}`, 'check that krunvm works: `krunvm list`; or use --launcher gvisor')
}
