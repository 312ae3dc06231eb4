import {Args, Flags} from '@oclif/core'
import {AgentCommand} from '../../base-command.js'
import type {BuildResult} from '../../services/image-service.js'

export default class ImageBuild extends AgentCommand<typeof ImageBuild> {
  static override summary = 'Build a language image offline, from Debian packages.'
  static override description = `Builds the Debian base the recipe starts FROM (localhost/agent/debian:trixie, or :bookworm for recipes that ask for it; debootstrap from AGENT_APT_MIRROR, default http://deb.debian.org/debian) when it is missing, then the language image from the runtime plugin's Containerfile.
LANGUAGE@VERSION builds that version's recipe into localhost/agent/<language>:<version>. A plain LANGUAGE builds the runtime's offline version (its default version when Debian packages it, else the newest that Debian does; \`agent runtimes\` shows which), tagged localhost/agent/<language>:<version> and localhost/agent/<language>:latest.
New VMs of that language and version boot from it instead of pulling the official image. A second run is quick: the base is kept and the layer cache reused (--no-cache rebuilds the language image).`
  static override examples = [
    '<%= config.bin %> image build python',
    '<%= config.bin %> image build python@3.11',
    '<%= config.bin %> image build node --no-cache',
    '<%= config.bin %> image build golang --json',
  ]
  static override args = {
    language: Args.string({required: true, description: 'Language (or alias), optionally @version, whose image to build; see `agent runtimes`.'}),
  }
  static override flags = {
    'no-cache': Flags.boolean({summary: 'Rebuild the language image without the layer cache (the base is kept).'}),
  }

  async run(): Promise<BuildResult> {
    const {buildImage} = await import('../../services/image-service.js')
    const res = await buildImage(await this.context(), {language: this.args.language, noCache: this.flags['no-cache']})
    const also = res.tags.filter((t) => t !== res.image)
    this.out(
      `${res.image} ${res.built ? 'built' : 'is up to date (cached)'} in ${(res.durationMs / 1000).toFixed(1)}s (${res.version ? `${res.language} ${res.version}, ` : ''}base ${res.base}${res.baseBuilt ? ', built' : ''}${also.length ? `; also tagged ${also.join(', ')}` : ''})`,
    )
    return res
  }
}
