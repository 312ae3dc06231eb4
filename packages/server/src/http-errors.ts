import {Code, ConnectError} from '@connectrpc/connect'
import {AgentError, errorMessage} from './floor.js'

/** An error with the HTTP status E2B would answer; the body is E2B's `{code, message}`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

const KIND_STATUS: Record<string, number> = {
  usage: 400,
  not_found: 404,
  conflict: 409,
  unavailable: 503,
  image: 500,
  guest: 500,
  internal: 500,
  interrupted: 503,
}

const CONNECT_STATUS: Partial<Record<Code, number>> = {
  [Code.NotFound]: 404,
  [Code.InvalidArgument]: 400,
  [Code.AlreadyExists]: 409,
  [Code.FailedPrecondition]: 400,
  [Code.PermissionDenied]: 403,
  [Code.Unimplemented]: 501,
  [Code.Unavailable]: 502,
}

/** The HTTP status and message for any error a service throws. */
export function httpStatusOf(err: unknown): {status: number; message: string} {
  if (err instanceof HttpError) return {status: err.status, message: err.message}
  if (err instanceof ConnectError) return {status: CONNECT_STATUS[err.code] ?? 500, message: err.rawMessage}
  if (err instanceof AgentError) return {status: KIND_STATUS[err.kind] ?? 500, message: err.hint ? `${err.message} (${err.hint})` : err.message}
  const e = err as {statusCode?: number; code?: string}
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 600) return {status: e.statusCode, message: errorMessage(err)}
  return {status: 500, message: errorMessage(err)}
}
