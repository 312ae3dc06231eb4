import type {RuntimesHookResult} from '@agent/runtime-kit'
import {runtime} from '../runtime.js'

// No npm imports at run time: a runtime plugin must install offline.
const hook = async (): Promise<RuntimesHookResult> => runtime

export default hook
