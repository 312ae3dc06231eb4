// Test helper for the e2e project: a private, throwaway image store with real buildah (needs buildah, root).
import {execa} from 'execa'
import {mkdtempSync, rmSync} from 'node:fs'
import {join} from 'node:path'
import {Buildah} from '../../packages/cli/src/images/buildah.js'
import {imageStore} from '../../packages/cli/src/images/storage.js'

export interface TempStore {
  dir: string
  buildah: Buildah
  env: Record<string, string>
  /** A tiny image (one empty layer, from scratch) tagged `tag`, built with buildah from + commit. */
  tinyImage(tag: string): Promise<void>
  cleanup(): Promise<void>
}

/** /var/tmp rather than /tmp: overlay storage wants a real filesystem. */
export function tempStore(prefix = 'agentimg-unit-'): TempStore {
  const dir = mkdtempSync(join('/var/tmp', prefix))
  const env = {AGENT_STATE_DIR: dir}
  const buildah = new Buildah(imageStore(dir, env))
  return {
    dir,
    buildah,
    env,
    async tinyImage(tag) {
      const ctr = await buildah.fromScratch(`agentimg-tiny-${process.pid}-${Date.now()}`)
      await buildah.config(ctr, ['--cmd', '/bin/true'])
      await buildah.commit(ctr, tag)
    },
    async cleanup() {
      await buildah.run(['rm', '--all'])
      await buildah.run(['rmi', '--all', '--force'])
      // Overlay leaves nothing mounted once images and containers are gone; be safe anyway.
      await execa('umount', ['-R', join(dir, 'containers', 'storage', 'overlay')], {reject: false})
      rmSync(dir, {recursive: true, force: true})
    },
  }
}
