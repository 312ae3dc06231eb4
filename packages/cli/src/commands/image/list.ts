import {AgentCommand} from '../../base-command.js'
import type {ImageRow} from '../../services/image-service.js'
import {renderTable} from '../../util/table.js'

export default class ImageList extends AgentCommand<typeof ImageList> {
  static override summary = 'List the images in the image store.'
  static override description = 'Images built by `agent image build` are named localhost/agent/<language>:<version> (the default offline version is also tagged :latest); the shared Debian bases are localhost/agent/debian:trixie (and :bookworm for older recipes).'
  static override examples = ['<%= config.bin %> image list', '<%= config.bin %> image list --json']

  async run(): Promise<ImageRow[]> {
    const {listImages} = await import('../../services/image-service.js')
    const rows = await listImages(await this.context())
    if (rows.length === 0) this.out('No images. Build one with `agent image build <language>` or pull one with `agent image pull <ref>`.')
    else this.out(renderTable(['REPOSITORY:TAG', 'ID', 'SIZE', 'CREATED'], rows.map((r) => [r.name, r.id, r.size, r.created.replace(/\.\d+Z$/, 'Z')])))
    return rows
  }
}
