import {execa, type ResultPromise} from 'execa'
import {AGENT_BIN} from './agent.js'
import {waitUntil} from './wait.js'

export interface ServeChild {
  proc: ResultPromise
  url: string
  /** Everything it printed so far. */
  output: () => string
}

/** A real `agent serve` child on 127.0.0.1:port, once its /health answers (60 s at most). */
export async function startServe(o: {port: number; env: Record<string, string>; apiKey: string; extra?: string[]}): Promise<ServeChild> {
  let out = ''
  const proc = execa(process.execPath, [AGENT_BIN, 'serve', '--listen', `127.0.0.1:${o.port}`, ...(o.extra ?? [])], {
    env: {...o.env, AGENT_API_KEY: o.apiKey, NO_COLOR: '1'},
    reject: false,
    all: true,
  })
  proc.all?.on('data', (b: Buffer) => (out += b.toString()))
  const url = `http://127.0.0.1:${o.port}`
  const up = await waitUntil(async () => (await fetch(`${url}/health`).catch(() => undefined))?.ok === true, 60_000)
  if (!up) throw new Error(`agent serve did not come up:\n${out}`)
  return {proc, url, output: () => out}
}
