/**
 * Every launcher's own create options, declared by the launchers (cheap, pure modules) so that
 * `vm create` can offer them as flags without naming a launcher or loading one.
 */
import {GVISOR_PLATFORM_OPTION} from './gvisor-version.js'
import {K8S_OPTIONS} from './kubernetes/config.js'
import type {LauncherOption} from './launcher.js'

export const LAUNCHER_OPTIONS: readonly LauncherOption[] = [GVISOR_PLATFORM_OPTION, ...K8S_OPTIONS]
