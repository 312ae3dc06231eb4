import {Args} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'

export default class ImagePull extends AgentCommand<typeof ImagePull> {
  static override summary = 'Pull an image from a registry into the image store.'
  static override description = `The reference is checked before anything runs. The pull gives up after AGENT_PULL_TIMEOUT seconds (default 60). When the registry cannot be reached, build the language image offline with \`agent image build <language>\` instead.`
  static override examples = ['<%= config.bin %> image pull docker.io/library/python:3.11-slim', 'AGENT_PULL_TIMEOUT=300 <%= config.bin %> image pull golang:1.22-bookworm']
  static override args = {
    ref: Args.string({required: true, description: 'Image reference, such as docker.io/library/python:3.11-slim.'}),
  }

  async run(): Promise<{image: string; id: string; durationMs: number}> {
    const [{loadRuntimes}, {Buildah}, {imageStore}, {pullImage}, {checkImageRef, pullTimeoutMs}] = await Promise.all([
      import('../../runtimes/registry.js'),
      import('../../images/buildah.js'),
      import('../../images/storage.js'),
      import('../../services/image-service.js'),
      import('../../images/resolve.js'),
    ])
    // Refuse a bad reference (and a bad timeout) before touching storage or buildah.
    const ref = checkImageRef(this.args.ref)
    const timeoutMs = pullTimeoutMs()
    const runtimes = (await loadRuntimes(this.config)).runtimes.map((r) => r.runtime)
    const res = await pullImage({buildah: new Buildah(imageStore(this.paths.root)), ref, runtimes, timeoutMs})
    this.out(`pulled ${res.image} (${res.id.slice(0, 12)})`)
    return res
  }
}
