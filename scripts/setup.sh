#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks, builds agent and puts it on PATH.
# Idempotent: a second run only checks, and takes seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
say() { printf '\n==> %s\n' "$*" >&2; }

packages=(buildah runc runsc crun skopeo umoci debootstrap slirp4netns passt iproute2 uidmap
  fuse-overlayfs e2fsprogs mount util-linux procps psmisc gcc libc6-dev shellcheck ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then echo "setup: run as root to install packages (or install them yourself): ${missing[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Debian packages: all present"
fi

# npm ci only when the lock file changed since the last install (sqlite3 builds from source: minutes).
stamp="node_modules/.agent-lock.sha256"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing npm dependencies (npm ci; sqlite3 compiles from source, about 3 minutes)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
else
  say "npm dependencies: up to date"
fi

say "building (TypeScript, oclif manifest, guest init)"
npm run --silent build

# Checked against npm's global bin, not PATH: under `npm run`, node_modules/.bin shadows it.
global_agent="$(npm prefix -g)/bin/agent"
if [ "$(readlink -f "$global_agent" 2>/dev/null)" != "$root/packages/cli/bin/run.js" ]; then
  say "putting agent on PATH (npm link)"
  (cd packages/cli && npm link --no-audit --no-fund --loglevel=error >/dev/null)
fi
say "agent is ready: $global_agent ($("$global_agent" --version))"
