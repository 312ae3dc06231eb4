import {Args} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'

export default class ImagePull extends AgentCommand<typeof ImagePull> {
  static override summary = 'Pull an image from a registry into the image store.'
  static override description = `The reference is checked before anything runs. The pull gives up after AGENT_PULL_TIMEOUT seconds (default 60). When the registry cannot be reached, build the language image offline with \`agent image build <language>\` instead.`
  static override examples = ['<%= config.bin %> image pull docker.io/library/python:3.13-slim', 'AGENT_PULL_TIMEOUT=300 <%= config.bin %> image pull docker.io/library/golang:1.24-trixie']
  static override args = {
    ref: Args.string({required: true, description: 'Image reference, such as docker.io/library/python:3.13-slim.'}),
  }

  async run(): Promise<{image: string; id: string; durationMs: number}> {
    const {pullImage} = await import('../../services/image-service.js')
    const res = await pullImage(await this.context(), this.args.ref)
    this.out(`pulled ${res.image} (${res.id.slice(0, 12)})`)
    return res
  }
}
