import {describe, expect, it} from 'vitest'
import {AgentError} from '../errors.js'
import {commandArgv} from '../services/vm-exec.js'
import {commandAfterDashes} from './flags.js'

const arg = (input: string) => ({type: 'arg', input})
const flag = (input: string) => ({type: 'flag', input})

describe('commandAfterDashes', () => {
  it('keeps the argv after -- in the order typed, duplicates included', () => {
    const raw = ['--vm', 'py', '--', 'echo', 'py', 'py']
    expect(commandAfterDashes({raw: [flag('py'), arg('echo'), arg('py'), arg('py')]}, raw)).toEqual(['echo', 'py', 'py'])
  })
  it('refuses arguments given without --, and unknown flags', () => {
    expect(() => commandAfterDashes({raw: [arg('python3')]}, ['--cmd', 'x', 'python3'])).toThrow(AgentError)
    expect(() => commandAfterDashes({raw: [], nonExistentFlags: ['--bogus']}, ['--bogus'])).toThrow(/unknown flag --bogus/)
  })
  it('is empty when nothing follows', () => {
    expect(commandAfterDashes({raw: [flag('x')]}, ['--vm', 'x'])).toEqual([])
  })
})

describe('commandArgv', () => {
  const runtime = {hello: ['python3', '-c', 'print("hello")']} as never
  it('runs an argv as is, without a shell', () => {
    expect(commandArgv(runtime, {argv: ['python3', '-c', 'print(1); print("$HOME")']}, [])).toEqual(['python3', '-c', 'print(1); print("$HOME")'])
  })
  it('runs --cmd through /bin/sh -c', () => {
    expect(commandArgv(runtime, {cmd: 'echo $HOME'}, [])).toEqual(['/bin/sh', '-c', 'echo $HOME'])
  })
  it('refuses two ways of saying what to run, and NUL bytes', () => {
    expect(() => commandArgv(runtime, {cmd: 'x', argv: ['y']}, [])).toThrow(/not --cmd and a command after --/)
    expect(() => commandArgv(runtime, {hello: true, argv: ['y']}, [])).toThrow(/--hello and a command after --/)
    expect(() => commandArgv(runtime, {argv: ['a\0b']}, [])).toThrow(/NUL/)
  })
})
