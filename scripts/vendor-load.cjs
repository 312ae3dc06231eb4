// Copied to packages/cli/dist/vendor/load.cjs by scripts/bundle.mjs. Loads one bundled CommonJS
// file (oclif, execa) like require() does, but compiled with V8's code cache written at build
// time (<file>.cache), which saves most of its compile time on every command. The cache is used
// only if it was made from these very bytes (a SHA-256 of the source heads it; V8 itself checks
// only the length) and by this node (V8 rejects it otherwise: then this is a plain compile).
// With --enable-source-maps, plain require(), so that stack traces map through the .map file.
'use strict'
const {readFileSync, writeFileSync} = require('node:fs')
const Module = require('node:module')
const {dirname} = require('node:path')

// The bundles' import(<expression>) (scripts/bundle.mjs): a function of this normally loaded module.
globalThis.__agentVendorImport ??= (specifier) => import(specifier)

const sourceMaps = process.execArgv.includes('--enable-source-maps') || /--enable-source-maps/.test(process.env.NODE_OPTIONS ?? '')

/** module.exports of `file`; `warm` (build only) returns a function that writes the cache after use. */
function loadVendor(file, {warm = false} = {}) {
  if (sourceMaps && !warm) return require(file)
  // Required here, not above: this file is loaded by bundles' wrappers that may never load theirs.
  const {createHash} = require('node:crypto')
  const vm = require('node:vm')
  const src = readFileSync(file, 'utf8')
  const hash = createHash('sha256').update(src).digest()
  let cachedData
  if (!warm) {
    try {
      const c = readFileSync(`${file}.cache`)
      if (c.subarray(0, 32).equals(hash)) cachedData = c.subarray(32)
    } catch {}
  }
  const script = new vm.Script(Module.wrap(src), {filename: file, cachedData, importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER})
  const mod = new Module(file, module)
  mod.filename = file
  mod.paths = Module._nodeModulePaths(dirname(file))
  script.runInThisContext().call(mod.exports, mod.exports, Module.createRequire(file), mod, file, dirname(file))
  mod.loaded = true
  if (warm) return {exports: mod.exports, save: () => writeFileSync(`${file}.cache`, Buffer.concat([hash, script.createCachedData()]))}
  return mod.exports
}

module.exports = {loadVendor}
