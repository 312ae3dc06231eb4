// The CLI's start-up dependencies as single files (esbuild), so that a command reads a few files
// instead of hundreds: @oclif/core (65 modules, plus semver's 47) and execa (106 with its deps)
// were most of what `agent vm list` loaded (bench/REPORT.md). tsc's output in packages/cli/dist
// stays as it is (agent serve's package imports it, module by module); only its imports of these
// packages are pointed at dist/vendor/. Dependencies loaded late on purpose stay packages of their
// own (listr2, winston, TypeORM, sqlite3's native module), so the import-graph test still sees them.
// Run by scripts/build.mjs after tsc and before the oclif manifest; safe to run again.
import {createRequire} from 'node:module'
import {readFileSync, readdirSync, writeFileSync} from 'node:fs'
import {dirname, join, relative, sep} from 'node:path'
import {build} from 'esbuild'

/** The packages bundled, and how their bundle re-exports them (ESM both: node parses a big CommonJS file twice). */
const VENDOR = {
  '@oclif/core': {file: 'oclif-core.js', cjs: true},
  execa: {file: 'execa.js', cjs: false},
}

export async function bundleCli(cliDir) {
  const dist = join(cliDir, 'dist')
  const vendor = join(dist, 'vendor')
  const req = createRequire(join(cliDir, 'package.json'))
  for (const [name, {file, cjs}] of Object.entries(VENDOR)) {
    // CommonJS has no static export list: name each export, as oclif's index defines them.
    const names = cjs ? Object.keys(req(name)).filter((k) => k !== 'default' && k !== '__esModule') : []
    await build({
      stdin: {contents: cjs ? `export {${names.join(', ')}} from '${name}'` : `export * from '${name}'`, resolveDir: cliDir, sourcefile: `vendor-${file}`},
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outfile: join(vendor, file),
      sourcemap: 'linked',
      minifySyntax: true,
      minifyWhitespace: true,
      legalComments: 'eof',
      // ts-node/tsx/typescript: oclif loads them only for TypeScript sources in development.
      external: ['typescript', 'ts-node', 'tsx'],
      // CommonJS inside an ES module still calls require() (node: builtins, JSON).
      banner: {js: `import {createRequire as __agentRequire} from 'node:module';const require=__agentRequire(import.meta.url);`},
      logLevel: 'warning',
    })
  }
  let rewritten = 0
  for (const file of jsFiles(dist)) {
    if (file.startsWith(vendor + sep)) continue
    const src = readFileSync(file, 'utf8')
    const out = src.replace(/(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(@oclif\/core|execa)\2/g, (_, pre, q, name) => {
      let rel = relative(dirname(file), join(vendor, VENDOR[name].file)).split(sep).join('/')
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

function* jsFiles(dir) {
  for (const e of readdirSync(dir, {withFileTypes: true})) {
    const p = join(dir, e.name)
    if (e.isDirectory()) yield* jsFiles(p)
    else if (e.name.endsWith('.js')) yield p
  }
}
