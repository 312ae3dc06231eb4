import {execFileSync} from 'node:child_process'
import {existsSync} from 'node:fs'
import {describe, expect, it} from 'vitest'
import {createArgv, startArgv} from './argv.js'
import {krunvmFailure, looksLikeKrunvmFailure} from './failure.js'
import {guestScript, guestVolumeReference, inlineGuestArgv} from './guest-script.js'
import {parseKrunvmToml} from './state-file.js'

/** Runs sh source and returns its stdout exactly (no trailing newline stripped). */
const sh = (shell: string, script: string) => execFileSync(shell, ['-c', script], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit']})

describe('argv and script builders', () => {
  it('builds create/start argv the way krunvm parses them', () => {
    expect(createArgv({image: 'img', name: 'agent-x', cpus: 0.5, memMib: 256, volumes: [['/h/in', '/in']], ports: [[8080, 80]]})).toEqual([
      'create', 'img', '--name', 'agent-x', '--cpus', '1', '--mem', '256', '--volume', '/h/in:/in', '--port', '8080:80',
    ])
    expect(() => createArgv({image: 'img', name: 'a', cpus: 1, memMib: 1, volumes: [['/h:x/in', '/in']]})).toThrow(/':' in paths/)
    expect(() => createArgv({image: 'img', name: 'a', cpus: 1, memMib: 1, volumes: [['/h/in', '/a/b']]})).toThrow(/single top-level/)
    expect(() => createArgv({image: 'img', name: 'a', cpus: 1, memMib: 1, ports: [[70000, 80]]})).toThrow(/invalid port/)
    expect(() => createArgv({image: '--help', name: 'a', cpus: 1, memMib: 1})).toThrow(/cannot be passed to krunvm/)
    expect(startArgv('vm', ['/bin/sh', '-c', 'x'], ['A=1'])).toEqual(['start', '--env', 'A=1', 'vm', '/bin/sh', '--', '-c', 'x'])
    expect(() => startArgv('vm', ['-x'])).toThrow(/cannot start with '-'/)
  })

  it('keeps every word intact in an inline script, with nothing the kernel command line cannot carry', () => {
    const weird = ['say "hi"', 'line1\nline2\n\n', "it's", '100%', 'back\\slash', 'tab\there', 'ü ✓ 🚀', '*', '$HOME', '  spaced  ', '', '-n']
    const script = guestScript({argv: ['printf', '%s|', ...weird], env: {Q: 'v "1"\n', PLAIN: 'p'}, workdir: '/tmp', inline: true})
    expect(script).not.toMatch(/["\x00-\x1f\x7f-\uffff]/)
    for (const shell of ['/bin/sh', '/bin/bash', '/bin/dash'].filter((s) => existsSync(s))) {
      const out = sh(shell, script.replace(/exec 'printf'/, "printf '[%s]' \"$Q$PLAIN\" \"$(pwd)\"; exec 'printf'"))
      expect(out, shell).toBe(`[v "1"\np][/tmp]${weird.join('|')}|`)
    }
  })

  it('quotes every word of the guest script for sh', () => {
    const weird = ["it's", '$(id)', '`id`', '"q"', 'a b', '\\n', '*', '-n', '']
    const script = guestScript({argv: ['printf', '%s|', ...weird], env: {X: "v'$1"}, workdir: '/tmp'})
    expect(sh('/bin/sh', script)).toBe(`${weird.join('|')}|`)
    expect(() => guestScript({argv: ['x'], env: {'BAD-NAME': '1'}})).toThrow(/invalid environment variable name/)
  })

  it('refuses inline commands that would not fit the kernel command line, and finds guest volume paths', () => {
    expect(inlineGuestArgv({argv: ['echo', 'hi'], env: {A: '1'}})).toEqual(['/bin/sh', '-c', "export A='1'; exec 'echo' 'hi'"])
    expect(() => inlineGuestArgv({argv: ['printf', 'x'.repeat(4096)]})).toThrow(/too long .* kernel command line/)
    expect(guestVolumeReference(['python3', '/in/main.py'])).toBe('/in/main.py')
    expect(guestVolumeReference(['sh', '-c', 'echo x > /out'])).toBe('echo x > /out')
    expect(guestVolumeReference(['ls'], '/persist/data')).toBe('/persist/data')
    expect(guestVolumeReference(['ls', '/input', '/tmp/in'])).toBeUndefined()
  })
})

describe('krunvm state file', () => {
  it('reads VM names, mapped volumes and containers from krunvm\'s TOML', () => {
    const toml = [
      'version = 1',
      'default_dns = "1.1.1.1"',
      '',
      '[vmconfig_map.agent-a]',
      'name = "agent-a"',
      'container = "agent-a-working-container"',
      '',
      '[vmconfig_map.agent-a.mapped_volumes]',
      '"/state/vms/a/in" = "/in"',
      "'/x = y' = '/out'",
      '',
      '[vmconfig_map."agent.b"]',
      'cpus = 2',
      '[other]',
      'container = "not a vm"',
    ].join('\n')
    const vms = parseKrunvmToml(toml)
    expect([...vms.keys()]).toEqual(['agent-a', 'agent.b'])
    expect(vms.get('agent-a')).toEqual({mappedVolumes: {'/state/vms/a/in': '/in', '/x = y': '/out'}, container: 'agent-a-working-container'})
    expect(vms.get('agent.b')).toEqual({mappedVolumes: {}})
    expect(parseKrunvmToml('')).toEqual(new Map())
  })
})

describe('krunvm failure mapping', () => {
  it('tells krunvm\'s own failures from the guest\'s', () => {
    expect(looksLikeKrunvmFailure(255, 'Error starting VM\n', '')).toBe(true)
    expect(looksLikeKrunvmFailure(255, 'guest said this\n', '')).toBe(false)
    expect(looksLikeKrunvmFailure(101, '', "thread 'main' panicked at src/main.rs:1:1")).toBe(true)
    expect(looksLikeKrunvmFailure(2, '', "error: unexpected argument '-c' found\n\nUsage: krunvm start <NAME>")).toBe(true)
    expect(looksLikeKrunvmFailure(2, '', 'usage: guest tool')).toBe(false)
    expect(looksLikeKrunvmFailure(7, 'Error starting VM', '')).toBe(false)
  })

  it('maps each kind of krunvm failure to an error kind, carrying krunvm\'s text', () => {
    const busy = krunvmFailure('krunvm start agent-x', 255, "Couldn't acquire lock file. Is another instance of this VM already running?\n", '', 'x')
    expect(busy).toMatchObject({kind: 'conflict', exitCode: 4, message: expect.stringMatching(/^VM x is busy running another command \(krunvm: Couldn't acquire/)})
    expect(krunvmFailure('w', 255, 'No VM found with name agent-x\n', '', 'x')).toMatchObject({kind: 'not_found', exitCode: 3, hint: 'clean it with `agent vm clean x`'})
    expect(krunvmFailure('w', 101, '', "thread 'main' panicked at x\nError mounting container\n")).toMatchObject({kind: 'internal', message: expect.stringMatching(/krunvm crashed \(exit 101\).*Error mounting container/)})
    expect(krunvmFailure('w', 2, '', "error: bad\n\nUsage: krunvm create")).toMatchObject({kind: 'internal', message: expect.stringMatching(/rejected its arguments/)})
    expect(krunvmFailure('w', 255, 'On macOS, krunvm requires a dedicated volume\n', '')).toMatchObject({kind: 'unavailable', hint: 'run scripts/macos/setup.sh'})
    expect(krunvmFailure('w', 255, 'Please re-run krunvm inside a "buildah unshare" session\n', '')).toMatchObject({kind: 'unavailable', hint: expect.stringMatching(/buildah unshare/)})
    expect(krunvmFailure('krunvm create agent-x', 255, 'buildah returned an error: oops\n', '')).toMatchObject({
      kind: 'unavailable', exitCode: 5, message: 'krunvm create agent-x failed (krunvm exit 255): buildah returned an error: oops',
    })
  })
})
