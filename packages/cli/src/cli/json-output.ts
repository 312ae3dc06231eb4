import {ux, type Config} from '@oclif/core'

/** The --json document exactly as oclif prints a command's result (Command.logJson), line break included. */
export function jsonDocument(json: unknown, config: Config): string {
  return `${ux.colorizeJson(json, {pretty: true, theme: config.theme?.json})}\n`
}
