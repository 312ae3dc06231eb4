import {execa} from 'execa'
import {join} from 'node:path'
import {describe, expect, it} from 'vitest'
import {ROOT} from '../helpers/agent.js'

describe('shell scripts', () => {
  it('pass shellcheck', async () => {
    const scripts = ['scripts/setup.sh', 'scripts/demo.sh', 'scripts/build-images.sh', 'scripts/macos/setup.sh', 'images/debian/build-base.sh', 'guest/build.sh', '.ci/run']
    const r = await execa('shellcheck', scripts.map((s) => join(ROOT, s)), {reject: false})
    expect(r.stdout + r.stderr).toBe('')
    expect(r.exitCode).toBe(0)
  })

  it('macOS set-up refuses to run on Linux, and its dry run says what it would do', async () => {
    const real = await execa('bash', [join(ROOT, 'scripts/macos/setup.sh')], {reject: false})
    expect(real.exitCode).not.toBe(0)
    expect(real.stderr + real.stdout).toMatch(/macOS/)
    const dry = await execa('bash', [join(ROOT, 'scripts/macos/setup.sh'), '--dry-run'], {reject: false})
    expect(dry.exitCode, dry.stderr).toBe(0)
    expect(dry.stdout + dry.stderr).toMatch(/export AGENT_STATE_DIR=/)
    expect(dry.stdout + dry.stderr).toMatch(/export CONTAINERS_STORAGE_CONF=/)
  })
})
