#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks, builds agent and puts it on PATH.
# Idempotent: a second run only checks, and takes seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
say() { printf '\n==> %s\n' "$*" >&2; }

packages=(buildah runc crun skopeo umoci debootstrap slirp4netns passt iproute2 nftables dnsmasq-base uidmap
  fuse-overlayfs e2fsprogs mount util-linux procps psmisc gcc libc6-dev shellcheck original-awk ca-certificates curl)
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

# runsc: bookworm's 0.0~20221219 rejects coreutils' statx flags (ls/stat fail with EINVAL), so on
# Debian 12 it comes from bookworm-backports (0.0~20240729.0), on the machine's own Debian mirror.
# apt pinning: runsc 0.0~20240729.0-* at 990, every other backports package at -1, so nothing
# else is ever pulled from backports (not by this script, not by a later `apt-get upgrade`).
runsc_want='0.0~20240729.0-'
runsc_have="$(dpkg-query -W -f='${Version}' runsc 2>/dev/null || true)"
codename="$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null | tr -d '"' || true)"
if [ "$codename" != bookworm ]; then
  # trixie and later ship runsc >= 20240729: the distribution's own is fine.
  if [ -z "$runsc_have" ]; then
    if [ "$(id -u)" -ne 0 ]; then echo "setup: run as root to install runsc (or install it yourself)" >&2; exit 1; fi
    say "installing runsc"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends runsc >/dev/null
  fi
  say "runsc: ${runsc_have:-installed}"
elif [[ "$runsc_have" == "$runsc_want"* ]] && [ -f /etc/apt/preferences.d/agent-bookworm-backports ]; then
  say "runsc: $runsc_have (bookworm-backports)"
else
  if [ "$(id -u)" -ne 0 ]; then echo "setup: run as root to install runsc ${runsc_want}* from bookworm-backports" >&2; exit 1; fi
  # The mirror the machine already uses for bookworm (deb822 .sources, else one-line lists).
  mirror="$(awk '/^URIs:/ {u=$2} /^Suites:/ && / bookworm( |$)/ {print u; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  [ -n "$mirror" ] || mirror="$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)"
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  say "enabling bookworm-backports ($mirror) for runsc only"
  cat >/etc/apt/sources.list.d/agent-bookworm-backports.sources <<EOF
# Added by agent's scripts/setup.sh: for runsc only (see /etc/apt/preferences.d/agent-bookworm-backports).
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat >/etc/apt/preferences.d/agent-bookworm-backports <<EOF
# Added by agent's scripts/setup.sh. A package's specific record wins over the general one.
Package: runsc
Pin: version ${runsc_want}*
Pin-Priority: 990

Package: *
Pin: release n=bookworm-backports
Pin-Priority: -1
EOF
  apt-get update -qq
  candidate="$(apt-cache policy runsc | awk '/Candidate:/ {print $2}')"
  if [[ "$candidate" != "$runsc_want"* ]]; then
    echo "setup: bookworm-backports offers no runsc ${runsc_want}* (candidate: ${candidate:-none}); see: apt-cache policy runsc" >&2
    exit 1
  fi
  say "installing runsc $candidate from bookworm-backports"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "runsc=$candidate" >/dev/null
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
