#!/usr/bin/env bash
# Sets up krunvm for agent on macOS (Apple silicon). Idempotent: run it again at any time.
#
#  1. krunvm and buildah from Homebrew (tap slp/krun), installed only when missing.
#  2. A case-sensitive APFS volume for krunvm's buildah storage (default /Volumes/krunvm),
#     created with `diskutil apfs addVolume` when missing; an existing volume that is not
#     case-sensitive is refused.
#  3. krunvm's storage_volume written into its TOML beforehand, so krunvm never stops to ask for
#     it on stdin: ~/Library/Preferences/rs.krunvm/krunvm.toml, and the TOML under the agent state
#     dir (agent runs krunvm with XDG_CONFIG_HOME=<state dir>/krunvm).
#  4. storage.conf, policy.json and registries.conf on that volume, where agent's image store
#     (packages/cli/src/images/storage.ts) looks for them, with the same graph root krunvm gives
#     buildah (--root <volume>/root --runroot <volume>/runroot), so both see the same images.
#  5. Prints the `export` lines to put in your shell profile.
#
# Usage: scripts/macos/setup.sh [--dry-run] [--mount DIR] [--volume-name NAME] [--container DISK]
#                               [--state-dir DIR] [--no-install]
#   --dry-run   print what would be done, change nothing (works on any OS, for smoke tests)
set -euo pipefail

MOUNT=/Volumes/krunvm
VOLNAME=krunvm
CONTAINER=''
STATE_DIR=''
DRY_RUN=0
INSTALL=1
TAP=slp/krun

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

die() {
  printf 'setup: error: %s\n' "$*" >&2
  exit 1
}

say() {
  printf 'setup: %s\n' "$*" >&2
}

# Runs a command that changes something, or shows it in --dry-run mode.
run() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '[dry-run] would run:' >&2
    printf ' %q' "$@" >&2
    printf '\n' >&2
  else
    "$@"
  fi
}

# write_file PATH MODE: content on stdin. Leaves an identical file alone.
write_file() {
  local path=$1 mode=$2 content
  content=$(cat)
  if [ -f "$path" ] && [ "$(cat "$path")" = "$content" ]; then
    say "unchanged: $path"
    return 0
  fi
  if [ "$DRY_RUN" = 1 ]; then
    printf '[dry-run] would write %s:\n' "$path" >&2
    printf '%s\n' "$content" | sed 's/^/    | /' >&2
    return 0
  fi
  mkdir -p "$(dirname "$path")"
  printf '%s\n' "$content" >"$path.tmp.$$"
  chmod "$mode" "$path.tmp.$$"
  mv -f "$path.tmp.$$" "$path"
  say "wrote: $path"
}

while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --no-install) INSTALL=0 ;;
    --mount) MOUNT=${2:?--mount needs a directory}; shift ;;
    --volume-name) VOLNAME=${2:?--volume-name needs a name}; shift ;;
    --container) CONTAINER=${2:?--container needs an APFS container such as disk3}; shift ;;
    --state-dir) STATE_DIR=${2:?--state-dir needs a directory}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
  shift
done

case $MOUNT in
  /*) ;;
  *) die "--mount must be an absolute path, got: $MOUNT" ;;
esac
case $MOUNT in
  *:* | *'"'* | *\\*) die "--mount cannot contain ':', '\"' or '\\' (krunvm and TOML would misread it): $MOUNT" ;;
esac
STATE_DIR=${STATE_DIR:-$MOUNT/agent}

OS=$(uname -s)
ON_MAC=0
[ "$OS" = Darwin ] && ON_MAC=1
if [ "$ON_MAC" = 0 ] && [ "$DRY_RUN" = 0 ]; then
  die "this script sets up krunvm on macOS only (this is $OS). On Linux, build krunvm with libkrun on a host with KVM, or use --runtime gvisor. Run with --dry-run to see what it would do."
fi
if [ "$ON_MAC" = 1 ] && [ "$(uname -m)" != arm64 ]; then
  say "warning: krunvm on macOS needs Apple silicon; this Mac is $(uname -m)"
fi
if [ "$DRY_RUN" = 1 ]; then say "dry run: nothing will be changed"; fi

# ------------------------------------------------------------------ 1. krunvm and buildah
have() { command -v "$1" >/dev/null 2>&1; }

BREW_PREFIX=''
if have brew; then
  BREW_PREFIX=$(brew --prefix)
  if ! brew list --formula krunvm >/dev/null 2>&1 && ! have krunvm; then
    [ "$INSTALL" = 1 ] || die "krunvm is not installed (and --no-install was given): brew tap $TAP && brew install krunvm"
    if ! brew tap | grep -qx "$TAP"; then run brew tap "$TAP"; fi
    run brew install krunvm
  else
    say "krunvm is installed"
  fi
  if ! brew list --formula buildah >/dev/null 2>&1 && ! have buildah; then
    [ "$INSTALL" = 1 ] || die "buildah is not installed (and --no-install was given): brew install buildah"
    run brew install buildah
  else
    say "buildah is installed"
  fi
elif [ "$ON_MAC" = 1 ]; then
  if ! { have krunvm && have buildah; }; then
    die "Homebrew is needed to install krunvm and buildah: see https://brew.sh, then run this again"
  fi
else
  printf '[dry-run] would check Homebrew, then: brew tap %s; brew install krunvm buildah (only if missing)\n' "$TAP" >&2
fi

# ------------------------------------------------------------------ 2. case-sensitive APFS volume
# The same test krunvm runs: two names differing only in case must be two files.
case_sensitive() {
  local dir=$1 probe
  probe="$dir/.agent-case-probe-$$"
  printf first >"${probe}-krunvm" || return 2
  printf second >"${probe}-krunVM" || { rm -f "${probe}-krunvm"; return 2; }
  local got
  got=$(cat "${probe}-krunvm")
  rm -f "${probe}-krunvm" "${probe}-krunVM"
  [ "$got" = first ]
}

if [ "$ON_MAC" = 1 ] && [ -d "$MOUNT" ] && mount | grep -q " on $MOUNT ("; then
  if case_sensitive "$MOUNT"; then
    say "volume $MOUNT is mounted and case-sensitive"
  else
    die "$MOUNT exists but is not case-sensitive; krunvm needs a case-sensitive APFS volume. Pick another --mount, or remove that volume (diskutil apfs deleteVolume) and run this again"
  fi
elif [ "$ON_MAC" = 1 ] && diskutil info "$VOLNAME" >/dev/null 2>&1; then
  # The volume exists but is not mounted where we want it.
  fs=$(diskutil info "$VOLNAME" | awk -F': *' '/File System Personality/ {print $2}')
  case $fs in
    *[Cc]ase-sensitive*) ;;
    *) die "APFS volume \"$VOLNAME\" exists but is \"$fs\", not case-sensitive; choose another --volume-name" ;;
  esac
  run diskutil mount -mountPoint "$MOUNT" "$VOLNAME"
else
  if [ -z "$CONTAINER" ]; then
    if [ "$ON_MAC" = 1 ]; then
      CONTAINER=$(diskutil info / | awk -F': *' '/APFS Container( Reference)?:/ {print $2; exit}')
      [ -n "$CONTAINER" ] || die "cannot find the APFS container of /: pass --container diskN (see \`diskutil apfs list\`)"
    else
      CONTAINER='<APFS container of />'
    fi
  fi
  if [ "$MOUNT" = "/Volumes/$VOLNAME" ]; then
    run diskutil apfs addVolume "$CONTAINER" "Case-sensitive APFS" "$VOLNAME"
  else
    run diskutil apfs addVolume "$CONTAINER" "Case-sensitive APFS" "$VOLNAME" -mountpoint "$MOUNT"
  fi
  if [ "$DRY_RUN" = 0 ]; then
    case_sensitive "$MOUNT" || die "the new volume at $MOUNT failed the case-sensitivity test"
  fi
fi

# ------------------------------------------------------------------ 3. krunvm's storage_volume
# set_storage_volume FILE: writes a complete krunvm 0.2.6 TOML when there is none (confy needs
# every field), else sets storage_volume in place.
set_storage_volume() {
  local file=$1
  if [ -f "$file" ]; then
    if grep -qx "storage_volume = \"$MOUNT\"" "$file"; then
      say "unchanged: $file (storage_volume = \"$MOUNT\")"
    elif grep -q '^storage_volume = ' "$file"; then
      if [ "$DRY_RUN" = 1 ]; then
        printf '[dry-run] would set storage_volume = "%s" in %s\n' "$MOUNT" "$file" >&2
      else
        sed -i '' -e "s|^storage_volume = .*|storage_volume = \"$MOUNT\"|" "$file" 2>/dev/null ||
          sed -i -e "s|^storage_volume = .*|storage_volume = \"$MOUNT\"|" "$file"
        say "set storage_volume = \"$MOUNT\" in $file"
      fi
    else
      die "$file has no storage_volume line; move it aside and run this again"
    fi
    return 0
  fi
  write_file "$file" 0644 <<EOF
version = 1
default_cpus = 2
default_mem = 1024
default_dns = "1.1.1.1"
storage_volume = "$MOUNT"

[vmconfig_map]
EOF
}

set_storage_volume "$HOME/Library/Preferences/rs.krunvm/krunvm.toml"
# agent runs krunvm with XDG_CONFIG_HOME=<state dir>/krunvm, in case this krunvm honours it.
set_storage_volume "$STATE_DIR/krunvm/krunvm/krunvm.toml"
if [ -n "${XDG_CONFIG_HOME:-}" ]; then set_storage_volume "$XDG_CONFIG_HOME/krunvm/krunvm.toml"; fi

# ------------------------------------------------------------------ 4. buildah storage config
STORE="$STATE_DIR/containers"
if [ -d "$MOUNT/root/overlay" ]; then
  DRIVER=overlay
else
  DRIVER=vfs
fi
write_file "$STORE/storage.conf" 0644 <<EOF
# Written by scripts/macos/setup.sh: the graph root krunvm gives buildah on macOS
# (--root $MOUNT/root --runroot $MOUNT/runroot), so agent and krunvm share images.
[storage]
driver = "$DRIVER"
graphroot = "$MOUNT/root"
runroot = "$MOUNT/runroot"
EOF
write_file "$STORE/policy.json" 0644 <<'EOF'
{
  "default": [
    {
      "type": "insecureAcceptAnything"
    }
  ]
}
EOF
write_file "$STORE/registries.conf" 0644 <<'EOF'
# Written by scripts/macos/setup.sh
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
run mkdir -p "$STORE/storage" "$MOUNT/root" "$MOUNT/runroot"

# ------------------------------------------------------------------ 5. the environment
# krunvm re-execs itself with DYLD_LIBRARY_PATH=$(brew --prefix)/lib when it is unset; setting it
# up front saves that (and lets libkrun be found when agent runs krunvm).
DYLD=''
if [ -n "$BREW_PREFIX" ] && compgen -G "$BREW_PREFIX/lib/libkrun*.dylib" >/dev/null; then
  DYLD="$BREW_PREFIX/lib"
fi

say "done. Add these lines to your shell profile:"
printf 'export AGENT_STATE_DIR=%q\n' "$STATE_DIR"
printf 'export CONTAINERS_STORAGE_CONF=%q\n' "$STORE/storage.conf"
printf 'export CONTAINERS_POLICY=%q\n' "$STORE/policy.json"
printf 'export CONTAINERS_REGISTRIES_CONF=%q\n' "$STORE/registries.conf"
if [ -n "$DYLD" ]; then
  printf 'export DYLD_LIBRARY_PATH=%q\n' "$DYLD"
elif [ "$ON_MAC" = 0 ]; then
  # shellcheck disable=SC2016 # printed for the user's shell to expand
  printf '%s\n' 'export DYLD_LIBRARY_PATH="$(brew --prefix)/lib"  # (dry run: libkrun not looked up)'
fi
cat <<'EOF'
# Guest volumes (/in, /out, /persist) are off by default on macOS: virtio-fs in krunvm 0.2.6 is
# unreliable there, so `--file` is refused and commands travel inline on the guest kernel
# command line (limit about 2000 bytes).
# To try them anyway (VMs created afterwards get them):
# export AGENT_ENABLE_GUEST_VOLUMES=1
# krunvm cannot turn networking off: create krunvm VMs with `--network allow_all`.
EOF
