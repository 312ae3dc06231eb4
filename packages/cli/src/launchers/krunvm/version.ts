/**
 * What each krunvm version lets agent do, read from krunvm's source (containers/krunvm tags
 * v0.2.4..v0.2.6) and its pull requests (#85 `--network=none` is open and not in any release
 * read; #90 bumps to 0.2.7 with no CLI change that the stored sources show). agent builds every
 * command line the 0.2.6 way (argv.ts); this table only says what the installed version allows.
 */

/** Versions whose CLI agent knows (the krunvm stand-in speaks each of them). */
export const KNOWN_VERSIONS = ['0.2.6', '0.2.7'] as const

export interface KrunvmFeatures {
  /** "0.2.6", or undefined when `krunvm --version` said something else. */
  version?: string
  /** agent knows this version's CLI. */
  known: boolean
  /** A switch to start a VM without network (none so far: TSI is always on). */
  networkOff: boolean
  /** macOS: mapped volumes work (virtio-fs through krun_add_virtiofs, from 0.2.5). */
  macVolumes: boolean
  /** One line for `agent doctor`: what this version allows. */
  summary: string
}

/** "krunvm 0.2.6" (krunvm --version) → [0, 2, 6]. */
export function parseKrunvmVersion(line: string | undefined): [number, number, number] | undefined {
  const m = /^krunvm (\d+)\.(\d+)\.(\d+)\s*$/.exec((line ?? '').trim())
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined
}

function atLeast(v: readonly number[], min: readonly number[]): boolean {
  for (let i = 0; i < 3; i++) if (v[i] !== min[i]) return v[i] > min[i]
  return true
}

export function krunvmFeatures(versionLine: string | undefined, platform: NodeJS.Platform): KrunvmFeatures {
  const v = parseKrunvmVersion(versionLine)
  const version = v?.join('.')
  const known = version !== undefined && (KNOWN_VERSIONS as readonly string[]).includes(version)
  const macVolumes = v !== undefined && atLeast(v, [0, 2, 5])
  const parts = ['network always on (no off switch: VMs need --network allow_all)', 'one command per boot, no terminal']
  if (platform === 'darwin') parts.push(macVolumes ? 'guest volumes through virtio-fs (AGENT_ENABLE_GUEST_VOLUMES=1)' : 'no guest volumes on macOS (krunvm 0.2.5 or newer mounts them)')
  let summary = `krunvm ${version}: ${parts.join('; ')}`
  if (version === undefined) summary = `agent cannot read krunvm's version (${JSON.stringify(versionLine ?? '')}); it speaks the CLI of krunvm ${KNOWN_VERSIONS.join(' and ')}`
  else if (!known) summary += `; agent knows ${KNOWN_VERSIONS.join(' and ')} and uses 0.2.6's command lines`
  return {version, known, networkOff: false, macVolumes, summary}
}
