import {Flags} from '@oclif/core'
import {usageError} from '../errors.js'

/** Flags shared by the commands that act on one or many VMs. */
export const targetFlags = {
  vm: Flags.string({char: 'v', multiple: true, summary: 'VM id or name (repeat for several).', exclusive: ['all']}),
  all: Flags.boolean({char: 'a', summary: 'Every VM this command applies to.', exclusive: ['vm']}),
  concurrency: Flags.integer({min: 1, max: 64, summary: 'How many VMs to work on at once (default: 2 x cores, at most 8).'}),
}

/** Fractional CPUs are allowed (0.5 = half a core). */
export const cpuFlag = Flags.custom<number>({
  parse: async (s) => {
    const n = Number(s)
    if (!/^\d+(\.\d+)?$/.test(s.trim()) || !Number.isFinite(n)) throw new Error(`--cpu takes a number of CPUs such as 1 or 0.5 (got ${JSON.stringify(s)})`)
    return n
  },
})

/** Flags shared by `vm exec` and `vm run`. */
export const execFlags = {
  ...targetFlags,
  cmd: Flags.string({char: 'c', summary: 'Shell command line to run in the VM (/bin/sh -c).'}),
  env: Flags.string({char: 'e', multiple: true, summary: 'Environment variable NAME=VALUE (repeatable).'}),
  workdir: Flags.string({char: 'w', summary: 'Working directory inside the VM.'}),
  // No -t: that is a terminal (`vm exec -it`), as in docker.
  timeout: Flags.integer({min: 1, max: 86_400, default: 30, summary: 'Seconds before the command and all its children are killed (exit 124).'}),
  file: Flags.string({char: 'f', multiple: true, summary: 'Host file to copy into /in (base name kept; repeatable).'}),
  out: Flags.directory({summary: 'Copy the VM\'s /out into this host directory afterwards.'}),
}

/** What `this.parse()` of a `strict = false` command returns that commandAfterDashes needs. */
export interface LooseParse {
  raw: ReadonlyArray<{type: string; input: string}>
  nonExistentFlags?: readonly string[]
}

/**
 * The argv after `--` (`agent vm exec --vm ID -- python3 -c 'print(1)'`), in order. Commands that
 * take one set `static strict = false`; then oclif lets unknown flags through, so they are
 * refused here. (oclif's own `argv` is re-sorted by first occurrence in the command line, which
 * misorders `--vm py -- echo py`; the raw tokens keep the order as typed.)
 */
export function commandAfterDashes(parsed: LooseParse, rawArgv: readonly string[]): string[] {
  const unknown = parsed.nonExistentFlags ?? []
  if (unknown.length) throw usageError(`unknown flag ${unknown[0]}`, 'see --help for the flags this command takes; the command to run goes after --')
  const args = parsed.raw.filter((r) => r.type === 'arg').map((r) => r.input)
  if (args.length && !rawArgv.includes('--')) {
    throw usageError(`unexpected argument ${JSON.stringify(args[0])}`, `put the command after --, as in: --vm ID -- ${args.join(' ')}`)
  }
  return args
}
