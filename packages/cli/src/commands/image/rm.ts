import {Args} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'

export default class ImageRm extends AgentCommand<typeof ImageRm> {
  static override summary = 'Remove an image from the image store.'
  static override examples = ['<%= config.bin %> image rm localhost/agent/python:latest']
  static override aliases = ['image:remove']
  static override args = {
    ref: Args.string({required: true, description: 'Image reference or id (see `agent image list`).'}),
  }

  async run(): Promise<{removed: string}> {
    const {removeImage} = await import('../../services/image-service.js')
    const res = await removeImage(await this.context(), this.args.ref)
    this.out(`removed ${res.removed}`)
    return res
  }
}
