import {Errors} from '@oclif/core'
import {describe, expect, it} from 'vitest'
import {AgentError, ExitCode, GuestExit} from '../errors.js'
import {errorOutput} from './error-output.js'

describe('errorOutput', () => {
  it("oclif's parse errors are usage errors (exit 2), known without loading oclif", () => {
    for (const err of [new Errors.CLIError('Expected --timeout=soon to be an integer'), new Errors.CLIError('x', {exit: 9})]) {
      const out = errorOutput(err, {json: false, debug: false})
      expect(out.code).toBe(ExitCode.Usage)
      expect(out.stderr).toMatch(/^Error: .*\nHint: see --help/)
    }
  })

  it('our errors keep their exit code and hint; a guest exit prints nothing; anything else is internal', () => {
    expect(errorOutput(new AgentError('not_found', 'VM not found: "x"', {hint: 'look'}), {json: true, debug: false})).toMatchObject({
      code: ExitCode.NotFound,
      stderr: 'Error: VM not found: "x"\nHint: look\n',
    })
    expect(errorOutput(new GuestExit(3), {json: false, debug: false})).toMatchObject({code: 3, stdout: '', stderr: ''})
    const plain = errorOutput(new TypeError('boom'), {json: false, debug: false})
    expect(plain).toMatchObject({code: ExitCode.Internal, message: 'internal error: boom'})
    // An error that merely has an `oclif` field that is not an object is not oclif's.
    expect(errorOutput(Object.assign(new Error('odd'), {oclif: 1}), {json: false, debug: false}).code).toBe(ExitCode.Internal)
  })
})
