import {existsSync, mkdirSync, readdirSync, writeFileSync} from 'node:fs'
import {join, resolve} from 'node:path'
import {debianBaseImage, defineRuntime, isValidImageRef} from '@agent/runtime-kit'
import {AgentError, usageError} from '../errors.js'

export interface ScaffoldOptions {
  language: string
  dir: string
  /** Default remote image. */
  image: string
  /** The interpreter or tool that runs a file, e.g. `perl`. */
  command: string
  /** File extension it runs, e.g. `.pl`. */
  extension: string
  /** Debian packages the offline recipe installs on the base image (may be empty). */
  aptPackages: string[]
}

/**
 * Writes a working runtime plugin: plain ESM JavaScript (no build step, no npm dependencies,
 * so it installs offline), a Containerfile on the Debian base, a README and a test.
 */
export function scaffoldRuntime(o: ScaffoldOptions): {dir: string; files: string[]} {
  const dir = resolve(o.dir)
  if (existsSync(dir) && readdirSync(dir).length > 0) throw new AgentError('conflict', `${dir} exists and is not empty`, {hint: 'choose another --dir'})
  if (!isValidImageRef(o.image)) throw usageError(`--image ${JSON.stringify(o.image)} is not a valid image reference`)
  if (!/^[A-Za-z0-9_.+-]+$/.test(o.command)) throw usageError(`--command ${JSON.stringify(o.command)} must be a plain program name`)
  for (const p of o.aptPackages) if (!/^[a-z0-9][a-z0-9+.-]+$/.test(p)) throw usageError(`--apt-package ${JSON.stringify(p)} is not a Debian package name`)
  const decl = {
    language: o.language,
    aliases: [] as string[],
    description: `${o.language} (community runtime)`,
    image: o.image,
    hello: [o.command, '--version'],
    version: [o.command, '--version'],
    fileRun: {[o.extension]: [o.command, '{file}']},
  }
  defineRuntime({...decl, recipe: '/validated-later/Containerfile'})
  const name = `agent-runtime-${o.language}`
  const files: Record<string, string> = {
    'package.json': JSON.stringify(
      {
        name,
        version: '0.1.0',
        description: `agent runtime plugin: ${o.language}`,
        type: 'module',
        files: ['hooks', 'Containerfile', 'README.md'],
        keywords: ['agent-runtime', 'oclif-plugin'],
        scripts: {test: 'node --test test/'},
        oclif: {hooks: {'agent:runtimes': './hooks/runtimes.js'}},
      },
      null,
      2,
    ) + '\n',
    'hooks/runtimes.js': `// agent calls this hook (event "agent:runtimes") to learn which language this plugin provides.
// Keep it free of npm dependencies: plugins must install offline.
import {fileURLToPath} from 'node:url'

/** @type {import('@agent/runtime-kit').RuntimeDeclaration} */
export const runtime = {
  language: ${JSON.stringify(o.language)},
  aliases: [],
  description: ${JSON.stringify(decl.description)},
  // Pulled by default; \`agent image build ${o.language}\` builds the Containerfile below instead.
  image: ${JSON.stringify(o.image)},
  recipe: fileURLToPath(new URL('../Containerfile', import.meta.url)),
  // What \`agent vm exec --hello\` runs.
  hello: ['sh', '-c', ${JSON.stringify(`echo "hello from ${o.language}: $(${o.command} --version 2>&1 | head -n 2 | tr '\\n' ' ')"`)}],
  version: [${JSON.stringify(o.command)}, '--version'],
  // \`agent vm run --file main${o.extension}\` runs this; {file} is the guest path (/in/main${o.extension}).
  fileRun: {${JSON.stringify(o.extension)}: [${JSON.stringify(o.command)}, '{file}']},
  env: {},
}

export default async function runtimes() {
  return runtime
}
`,
    Containerfile: `# Offline recipe: built by \`agent image build ${o.language}\` on agent's Debian base image.
FROM ${debianBaseImage()}
${o.aptPackages.length ? `RUN apt-get update \\\n && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${o.aptPackages.join(' ')} \\\n && rm -rf /var/lib/apt/lists/*\n` : ''}CMD [${JSON.stringify(o.command)}, "--version"]
`,
    'README.md': `# ${name}

An [agent](https://example.invalid/agent) runtime plugin for ${o.language}.

    agent plugins link .            # while developing
    npm pack && agent plugins install file:./${name}-0.1.0.tgz
    agent runtimes                  # ${o.language} is listed
    agent image build ${o.language}       # offline image from ./Containerfile
    agent vm create --language ${o.language}
`,
    'test/runtime.test.js': `import {test} from 'node:test'
import assert from 'node:assert/strict'
import {existsSync} from 'node:fs'
import runtimes from '../hooks/runtimes.js'

test('declares ${o.language}', async () => {
  const r = await runtimes()
  assert.equal(r.language, ${JSON.stringify(o.language)})
  assert.ok(existsSync(r.recipe))
  assert.ok(Object.values(r.fileRun).every((argv) => argv.includes('{file}')))
})
`,
  }
  for (const [rel, text] of Object.entries(files)) {
    const p = join(dir, rel)
    mkdirSync(join(p, '..'), {recursive: true})
    writeFileSync(p, text)
  }
  return {dir, files: Object.keys(files)}
}
