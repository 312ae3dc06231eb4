/**
 * The one place the server reaches into agent's service floor (packages/cli). Routes use these
 * services; none of them talks to a launcher, the database schema or a host program directly.
 */
export {createVm, listVms, stopVm, startVm, cleanVm, resolveVm, type CreateOptions} from '@agent/cli/dist/services/vm-service.js'
export {execVm, type ExecOptions} from '@agent/cli/dist/services/vm-exec.js'
export type {ServiceContext} from '@agent/cli/dist/services/context.js'
export type {VmRecord} from '@agent/cli/dist/state/vm-record.js'
export type {ExecResult} from '@agent/cli/dist/launchers/launcher.js'
export {AgentError, errorMessage} from '@agent/cli/dist/errors.js'
export {configSection} from '@agent/cli/dist/config/state-config.js'
export {logger} from '@agent/cli/dist/logging/logger.js'
export {parseLanguageRef} from '@agent/cli/dist/runtimes/registry.js'
export {writeFileAtomic} from '@agent/cli/dist/util/files.js'
export {drainedOrClosed} from '@agent/cli/dist/util/drained.js'
// agent serve's route (serve-route.ts): the commands' own front-end code, run for a CLI client.
export {errorOutput} from '@agent/cli/dist/cli/error-output.js'
export {withConsole} from '@agent/cli/dist/logging/logger.js'
export * as frames from '@agent/cli/dist/fast/frames.js'
export {routableRequest, routeEnv, type RoutedRequest, type RouteHello} from '@agent/cli/dist/fast/route-request.js'
export {runRoutedCommand} from '@agent/cli/dist/cli/routed-command.js'
