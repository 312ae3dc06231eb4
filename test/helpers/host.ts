import {execa} from 'execa'
import {existsSync, readdirSync} from 'node:fs'
import {join} from 'node:path'
import {TEST_IMAGE_STORE} from './agent.js'

/** Runtime containers agent made for a state dir, straight from the runtime. */
export async function runtimeContainers(stateDir: string, launcher: 'gvisor' | 'runc'): Promise<string[]> {
  const root = join(stateDir, 'run', launcher)
  if (!existsSync(root)) return []
  const bin = launcher === 'gvisor' ? 'runsc' : 'runc'
  const res = await execa(bin, ['--root', root, 'list', '--format', 'json'], {reject: false})
  if (res.exitCode !== 0 || !res.stdout.trim() || res.stdout.trim() === 'null') return []
  return (JSON.parse(res.stdout) as Array<{id: string}>).map((c) => c.id)
}

/** Working containers in the shared test image store. */
export async function buildahContainers(): Promise<string[]> {
  const res = await execa('buildah', ['containers', '--json'], {env: {CONTAINERS_STORAGE_CONF: join(TEST_IMAGE_STORE, 'storage.conf')}, reject: false})
  if (!res.stdout.trim() || res.stdout.trim() === 'null') return []
  return (JSON.parse(res.stdout) as Array<{containername: string}>).map((c) => c.containername)
}

/** Mounts whose path mentions a VM id. */
export async function mountsOf(id: string): Promise<string[]> {
  const {stdout} = await execa('cat', ['/proc/self/mountinfo'])
  return stdout.split('\n').filter((l) => l.includes(id))
}

export function vmDirs(stateDir: string): string[] {
  const d = join(stateDir, 'vms')
  return existsSync(d) ? readdirSync(d) : []
}
