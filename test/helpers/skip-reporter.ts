/**
 * No silent skips. After the default reporter's summary this lists every skipped or todo test
 * with its reason (the note given to `ctx.skip(note)`, or which marker skipped it), and on Linux
 * CI (CI set and not "false"/"0") any skipped test fails the run: this suite is meant to run
 * completely on a Linux host that `scripts/setup.sh` prepared.
 *
 * Tests left out by a name filter (`-t`) are not counted: the user asked for that.
 */
import {relative} from 'node:path'
import type {Reporter, TestCase, TestModule, TestRunEndReason, Vitest} from 'vitest/node'

interface Skip {
  where: string
  reason: string
}

export function ciFailsOnSkips(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): boolean {
  const ci = (env.CI ?? '').trim().toLowerCase()
  return platform === 'linux' && ci !== '' && ci !== 'false' && ci !== '0'
}

/** The first enclosing suite (or the file) whose hook failed, if any: vitest then skips its tests. */
function failedHookOf(t: TestCase): string | undefined {
  for (let p: TestCase['parent'] | undefined = t.parent; p; p = p.type === 'suite' ? p.parent : undefined) {
    const errors = p.errors()
    if (errors.length) return `${p.type === 'suite' ? `suite "${p.fullName}"` : 'the file'}: ${errors[0]?.message ?? 'error'}`.split('\n')[0]
  }
  return undefined
}

function reasonOf(t: TestCase): string {
  const r = t.result()
  const note = r.state === 'skipped' ? r.note : undefined
  if (note) return note
  if (t.options.mode === 'todo') return 'todo: not written yet'
  const hook = failedHookOf(t)
  if (hook) return `not run: a hook failed in ${hook}`.slice(0, 300)
  return 'no reason given (it.skip / describe.skip / skipIf in the source)'
}

export default class SkipReporter implements Reporter {
  private vitest: Vitest | undefined

  onInit(vitest: Vitest): void {
    this.vitest = vitest
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>, _errors: unknown, reason: TestRunEndReason): void {
    if (reason === 'interrupted') return
    const root = this.vitest?.config.root ?? process.cwd()
    const filtered = Boolean(this.vitest?.config.testNamePattern)
    const skips: Skip[] = []
    for (const m of testModules) {
      for (const t of m.children.allTests()) {
        if (t.result().state !== 'skipped') continue
        skips.push({where: `${relative(root, m.moduleId)} > ${t.fullName}`, reason: reasonOf(t)})
      }
    }
    const log = (s: string) => (this.vitest ? this.vitest.logger.log(s) : console.log(s))
    if (skips.length === 0) return
    if (filtered) {
      log(`\n${skips.length} test(s) left out by the name filter (-t); not counted as skips.`)
      return
    }
    log(`\nSkipped tests (${skips.length}), with the reason:`)
    for (const s of skips) log(`  - ${s.where}\n      ${s.reason}`)
    if (ciFailsOnSkips()) {
      log(`\nFAIL: ${skips.length} test(s) skipped on Linux CI (CI=${process.env.CI}). Every test must run here: fix the cause or the test.`)
      process.exitCode = 1
    }
  }
}
