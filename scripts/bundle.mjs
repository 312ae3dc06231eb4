// The CLI's start-up dependencies as single files (esbuild), so that a command reads a few files
// instead of hundreds: @oclif/core (65 modules, plus semver's 47) and execa (106 with its deps)
// were most of what `agent vm list` loaded (bench/REPORT.md). tsc's output in packages/cli/dist
// stays as it is (agent serve's package imports it, module by module); only its imports of these
// packages are pointed at dist/vendor/. Dependencies loaded late on purpose stay packages of their
// own (listr2, winston, TypeORM, sqlite3's native module), so the import-graph test still sees them.
// Run by scripts/build.mjs after tsc and before the oclif manifest; safe to run again.
import {createRequire} from 'node:module'
import {execFileSync} from 'node:child_process'
import {copyFileSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync} from 'node:fs'
import {dirname, join, relative, sep} from 'node:path'
import {fileURLToPath} from 'node:url'
import {build} from 'esbuild'

/** The packages bundled: each as one CommonJS file and a small ES module naming its exports. */
const VENDOR = {
  '@oclif/core': 'oclif-core',
  execa: 'execa',
}
/** Bundles whose module loads them on first call: our code imports only functions from them. */
const LAZY = new Set(['execa'])

export async function bundleCli(cliDir) {
  const dist = join(cliDir, 'dist')
  const vendor = join(dist, 'vendor')
  // Built aside, then moved in file by file (rename is atomic): agent processes running while
  // this builds (other work in the same tree) never see a missing or half-written file.
  const out = join(dist, `.vendor-${process.pid}`)
  const req = createRequire(join(cliDir, 'package.json'))
  rmSync(out, {recursive: true, force: true})
  for (const [name, base] of Object.entries(VENDOR)) {
    // CommonJS loaded by require() from a small ES module: node parses it once (an ES-module
    // import of a CommonJS file first scans all of it for export names).
    await build({
      entryPoints: [req.resolve(name)],
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      outfile: join(out, `${base}.cjs`),
      sourcemap: 'linked',
      minifySyntax: true,
      minifyWhitespace: true,
      legalComments: 'eof',
      // ts-node/tsx/typescript: oclif loads them only for TypeScript sources in development.
      external: ['typescript', 'ts-node', 'tsx'],
      plugins: [runtimeImports],
      logLevel: 'error',
    })
    const mod = createRequire(import.meta.url)(join(out, `${base}.cjs`))
    const names = Object.keys(mod).filter((k) => k !== 'default' && k !== '__esModule' && /^[A-Za-z_$][\w$]*$/.test(k))
    const head = `// ${name}, bundled by scripts/bundle.mjs.\nimport {createRequire} from 'node:module'\nimport {fileURLToPath} from 'node:url'\nconst {loadVendor} = createRequire(import.meta.url)('./load.cjs')\n`
    const file = `fileURLToPath(new URL('./${base}.cjs', import.meta.url))`
    writeFileSync(
      join(out, `${base}.js`),
      LAZY.has(name)
        ? // Loaded on the first call: its functions only (not classes, nor $ with its properties).
          `${head}// Loaded on first use: most commands start no program (an exec runs over the guest channel).\nlet m\nconst load = () => (m ??= loadVendor(${file}))\n${names
            .filter((k) => /^[a-z]/.test(k) && typeof mod[k] === 'function')
            .map((k) => `export const ${k} = (...args) => load().${k}(...args)\n`)
            .join('')}`
        : `${head}const m = loadVendor(${file})\nexport const {${names.join(', ')}} = m\nexport default m\n`,
    )
  }
  copyFileSync(join(dirname(fileURLToPath(import.meta.url)), 'vendor-load.cjs'), join(out, 'load.cjs'))
  // V8's code cache of each bundle, made by a fresh node doing what a command does with them.
  execFileSync(process.execPath, ['--input-type=module', '-e', WARM, out], {cwd: cliDir, stdio: 'inherit', env: {...process.env, NODE_OPTIONS: ''}})
  mkdirSync(vendor, {recursive: true})
  const made = readdirSync(out)
  for (const f of made) renameSync(join(out, f), join(vendor, f))
  for (const f of readdirSync(vendor)) if (!made.includes(f)) rmSync(join(vendor, f), {force: true})
  rmSync(out, {recursive: true, force: true})
  let rewritten = 0
  for (const file of jsFiles(dist)) {
    if (file.startsWith(vendor + sep)) continue
    const src = readFileSync(file, 'utf8')
    const out = src.replace(/(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(@oclif\/core|execa)\2/g, (_, pre, q, name) => {
      let rel = relative(dirname(file), join(vendor, `${VENDOR[name]}.js`)).split(sep).join('/')
      if (!rel.startsWith('.')) rel = `./${rel}`
      return `${pre}${q}${rel}${q}`
    })
    if (out !== src) {
      writeFileSync(file, out)
      rewritten++
    }
  }
  return rewritten
}

// Two changes to the bundled sources. import(<expression>) (how oclif loads ES-module commands and plugins) calls a function that
// vendor-load.cjs defines: code compiled from V8's code cache has no import() callback of its own
// in node 20. import('literal') is left to esbuild, which bundles it.
const runtimeImports = {
  name: 'runtime-imports',
  setup(b) {
    b.onLoad({filter: /[\\/]node_modules[\\/].*\.(c?js|mjs)$/}, (args) => {
      let src = readFileSync(args.path, 'utf8')
      // oclif's check of its own engines reads ../package.json next to its file, which the bundle
      // does not have (it always failed silently there), after loading semver (~50 modules) for it.
      if (/[\\/]@oclif[\\/]core[\\/]lib[\\/]index\.js$/.test(args.path)) src = src.replace(/^checkNodeVersion\(\);$/m, '')
      else if (!/\bimport\s*\(/.test(src)) return undefined
      return {contents: src.replace(/(?<![\w$.])import\s*\((?!\s*['"`)])/g, '__agentVendorImport('), loader: 'js'}
    })
  },
}

// Runs in packages/cli: load both bundles, do what start-up does (config, a command class, its
// flags, one program run), then write each cache.
const WARM = `
import {createRequire} from 'node:module'
const dir = process.argv[1]
const {loadVendor} = createRequire(import.meta.url)(dir + '/load.cjs')
const oclif = loadVendor(dir + '/oclif-core.cjs', {warm: true})
const execa = loadVendor(dir + '/execa.cjs', {warm: true})
const {Config, Flags, Parser} = oclif.exports
const config = await Config.load(process.cwd())
config.findCommand('vm:exec')
await Parser.parse(['--vm', 'x', '--cmd', 'true', '--json'], {flags: {vm: Flags.string({multiple: true}), cmd: Flags.string(), json: Flags.boolean()}, args: {}, strict: true})
await execa.exports.execa('true', [], {reject: false})
oclif.save()
execa.save()
`

function* jsFiles(dir) {
  for (const e of readdirSync(dir, {withFileTypes: true})) {
    const p = join(dir, e.name)
    if (e.isDirectory()) yield* jsFiles(p)
    else if (e.name.endsWith('.js')) yield p
  }
}
