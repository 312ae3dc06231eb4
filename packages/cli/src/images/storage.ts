import {mkdirSync, existsSync} from 'node:fs'
import {join, resolve} from 'node:path'
import {writeFileAtomic} from '../util/files.js'

/** The environment and flags that point buildah (and krunvm's buildah) at our storage. */
export interface ImageStore {
  /** Extra environment for every buildah call; empty when using the user's normal storage. */
  env: Record<string, string>
  /** `--signature-policy` path, when isolated. */
  policy?: string
  /** The storage dir, when isolated. */
  dir?: string
  /**
   * When isolated: the dir that stands in for /var/lib/containers while buildah runs. containers/image
   * keeps its blob-info cache at /var/lib/containers/cache whatever storage.conf says, so `Buildah`
   * runs writing commands in a private mount namespace with this dir bound over it.
   */
  hostDir?: string
}

/**
 * With AGENT_STATE_DIR set, buildah's graph root and run root live under it, so a test run
 * never touches /var/lib/containers. AGENT_IMAGE_STORE points several state dirs at one
 * store (the test suite shares its built images that way). Otherwise the user's normal
 * container storage is used.
 */
export function imageStore(stateRoot: string, env: NodeJS.ProcessEnv = process.env): ImageStore {
  const dir = env.AGENT_IMAGE_STORE
    ? resolve(env.AGENT_IMAGE_STORE)
    : env.AGENT_STATE_DIR
      ? join(resolve(stateRoot), 'containers')
      : undefined
  if (!dir) return {env: {}}
  const storageConf = join(dir, 'storage.conf')
  const policy = join(dir, 'policy.json')
  const registries = join(dir, 'registries.conf')
  const hostDir = join(dir, 'host-var-lib-containers')
  if (!existsSync(storageConf) || !existsSync(policy) || !existsSync(registries) || !existsSync(hostDir)) {
    for (const sub of ['storage', 'runroot', 'host-var-lib-containers']) mkdirSync(join(dir, sub), {recursive: true, mode: 0o700})
    // TOML basic strings share JSON's escapes for what a path can hold.
    const q = (s: string) => JSON.stringify(s)
    writeFileAtomic(
      storageConf,
      `# Written by agent: image storage isolated under ${dir}\n[storage]\ndriver = "overlay"\ngraphroot = ${q(join(dir, 'storage'))}\nrunroot = ${q(join(dir, 'runroot'))}\n`,
    )
    writeFileAtomic(policy, JSON.stringify({default: [{type: 'insecureAcceptAnything'}]}, null, 2) + '\n')
    writeFileAtomic(registries, '# Written by agent\nunqualified-search-registries = ["docker.io"]\nshort-name-mode = "permissive"\n')
  }
  return {
    dir,
    policy,
    hostDir,
    env: {
      CONTAINERS_STORAGE_CONF: storageConf,
      CONTAINERS_REGISTRIES_CONF: registries,
      CONTAINERS_POLICY: policy,
    },
  }
}

