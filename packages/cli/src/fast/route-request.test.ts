import {describe, expect, it} from 'vitest'
import {VM_STATUSES} from '../state/vm-record.js'
import {ROUTE_VM_STATUSES, routableRequest, routeEnv} from './route-request.js'
import {routeHello} from './serve-route.js'

describe('route: which command lines it takes', () => {
  it('parses the plain single-VM exec/run and list forms', () => {
    expect(routableRequest(['vm', 'exec', '--vm', 'py', '--cmd', 'echo hi'])).toEqual({kind: 'exec', command: 'exec', vm: 'py', cmd: 'echo hi', argv: [], hello: false, env: [], workdir: undefined, timeout: undefined, json: false})
    expect(routableRequest(['vm', 'exec', '-v', 'py', '-e', 'A=1', '--env=B=2', '-w', '/tmp', '--timeout', '5', '--json', '--', 'sh', '-c', 'x --json'])).toEqual({kind: 'exec', command: 'exec', vm: 'py', cmd: undefined, argv: ['sh', '-c', 'x --json'], hello: false, env: ['A=1', 'B=2'], workdir: '/tmp', timeout: 5, json: true})
    expect(routableRequest(['vm', 'exec', '--vm=py', '--hello'])).toMatchObject({hello: true, vm: 'py'})
    expect(routableRequest(['vm', 'run', '--vm', 'py', '-c', 'true'])).toMatchObject({command: 'run', cmd: 'true'})
    expect(routableRequest(['vm', 'list'])).toEqual({kind: 'list', all: false, status: undefined, json: false})
    expect(routableRequest(['vm', 'list', '-a', '--status', 'stopped', '--json'])).toEqual({kind: 'list', all: true, status: 'stopped', json: true})
  })

  it('leaves everything else to the normal path', () => {
    const no = [
      ['vm', 'exec', '-it', '--vm', 'py', '--', 'bash'],
      ['vm', 'exec', '-i', '--vm', 'py', '--', 'cat'],
      ['vm', 'exec', '-t', '--vm', 'py', '--', 'bash'],
      ['vm', 'exec', '--all', '--hello'],
      ['vm', 'exec', '--vm', 'a', '--vm', 'b', '--hello'],
      ['vm', 'exec', '--vm', 'py', '--file', 'x.py', '--', 'true'],
      ['vm', 'exec', '--vm', 'py', '--out', 'o', '--', 'true'],
      ['vm', 'exec', '--vm', 'py', '--concurrency', '2', '--hello'],
      ['vm', 'exec', '--vm', 'py', '--log-level', 'debug', '--hello'],
      ['vm', 'exec', '--vm', 'py', '--help'],
      ['vm', 'exec', '--vm', 'py'],
      ['vm', 'exec', '--vm', 'py', '--cmd', 'a', '--', 'b'],
      ['vm', 'exec', '--vm', 'py', '--cmd', 'a', '--hello'],
      ['vm', 'exec', '--vm', 'py', 'echo', 'hi'],
      ['vm', 'exec', '--vm', 'py', '--timeout', '0', '--hello'],
      ['vm', 'exec', '--vm', 'py', '--timeout', '86401', '--hello'],
      ['vm', 'exec', '--vm', 'py', '--timeout', '1e3', '--hello'],
      ['vm', 'exec', '--vm', '--json', '--hello'],
      ['vm', 'exec', '--vm', '', '--hello'],
      ['vm', 'exec', '--vm', 'py', '--hello=true'],
      ['vm', 'exec', '--vm', 'py', '--', 'a', '--', 'b'],
      ['vm', 'exec', '--vm', 'py', '--cmd'],
      ['vm', 'exec', '--vm', 'py', '--cmd', 'a\0b'],
      ['vm', 'run', '--vm', 'py', '--hello'],
      ['vm', 'run', '--vm', 'py', '--file', 'main.py'],
      ['vm', 'list', '--status', 'bogus'],
      ['vm', 'list', 'extra'],
      ['vm', 'list', '--'],
      ['vm', 'list', '--all', '--all'],
      ['vm', 'create', '--language', 'python'],
      ['vm:exec', '--vm', 'py', '--hello'],
      ['exec'],
    ]
    for (const argv of no) expect(routableRequest(argv), argv.join(' ')).toBeUndefined()
  })

  it('knows the same VM states as vm list', () => {
    expect([...ROUTE_VM_STATUSES]).toEqual([...VM_STATUSES])
  })

  it('compares only the AGENT_* variables that matter, ignoring empty ones', () => {
    expect(routeEnv({AGENT_GUEST_DIR: '/g', AGENT_API_KEY: 'k', AGENT_STATE_DIR: '/s', AGENT_LAUNCHER: 'runc', AGENT_LOG_FILE: '', PATH: '/bin', AGENT_IMAGE_STORE: '/i'})).toEqual({AGENT_GUEST_DIR: '/g', AGENT_IMAGE_STORE: '/i'})
  })
})

describe('route: the client\'s hello', () => {
  it('is off with AGENT_SERVE_ROUTE=off, another log level, a log file or a JSON content type; stdin only when it would be read', () => {
    const argv = ['vm', 'exec', '--vm', 'py', '--', 'cat']
    expect(routeHello(argv, {AGENT_STATE_DIR: '/s'}, false)).toMatchObject({proto: 1, root: '/s', argv, stdin: true})
    expect(routeHello(argv, {AGENT_STATE_DIR: '/s'}, true)?.stdin).toBe(false)
    expect(routeHello([...argv.slice(0, 4), '--json', ...argv.slice(4)], {AGENT_STATE_DIR: '/s'}, false)?.stdin).toBe(false)
    expect(routeHello(['vm', 'list'], {AGENT_STATE_DIR: '/s'}, false)?.stdin).toBe(false)
    expect(routeHello(argv, {AGENT_STATE_DIR: '/s', AGENT_LOG_LEVEL: 'info', AGENT_LOG_FILE: ''}, false)).toBeDefined()
    for (const extra of [{AGENT_SERVE_ROUTE: 'off'}, {AGENT_LOG_LEVEL: 'debug'}, {AGENT_LOG_FILE: '/tmp/x.log'}, {AGENT_CONTENT_TYPE: 'json'}]) {
      expect(routeHello(argv, {AGENT_STATE_DIR: '/s', ...extra}, false), JSON.stringify(extra)).toBeUndefined()
    }
  })
})

describe('route: the fast path stays small', () => {
  it('imports only node: builtins and its own folder (it runs before anything else is loaded)', async () => {
    const {readdirSync, readFileSync} = await import('node:fs')
    const here = new URL('.', import.meta.url)
    const files = readdirSync(here).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
    expect(files.sort()).toEqual(['frames.ts', 'route-request.ts', 'serve-route.ts', 'state-root.ts'])
    for (const f of files) {
      const specs = [...readFileSync(new URL(f, here), 'utf8').matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm)].map((m) => m[1] ?? m[2])
      if (f === 'serve-route.ts') expect(specs.length, 'the pattern finds imports').toBeGreaterThan(5)
      for (const s of specs) expect(s, `${f} imports ${s}`).toMatch(/^(node:[a-z_/]+|\.\/[a-z-]+\.js)$/)
    }
  })
})
