#!/usr/bin/env bash
# Sets up krunvm for agent on macOS (Apple silicon). Run it again at any time: what is already
# right is left alone, and every change it makes is named as it happens and listed at the end.
# It uses no sudo; it never deletes anything (a file it replaces is kept as FILE.bak-<time>).
#
#  1. Checks the Mac: Apple silicon, a native (not Rosetta) shell, Hypervisor.framework.
#  2. krunvm and buildah from Homebrew's tap slp/krun (slp/krun/krunvm, slp/krun/buildah), only
#     when missing. If Homebrew has no ready-made bottle for this macOS, it would build from
#     source (Xcode command line tools, Rust, Go; a long time): the script stops first and says so.
#  3. A case-sensitive APFS volume for krunvm's buildah storage, /Volumes/<name> (default
#     /Volumes/krunvm): an existing one is found by its device identifier and mounted; none is
#     made with `diskutil apfs addVolume` (it shares the disk's free space, erases nothing).
#     macOS mounts it at /Volumes/<name> again after every restart. macOS may ask for your
#     password for these diskutil steps (the script says so first).
#     Tests set AGENT_SETUP_VOLUMES_DIR to stand in for /Volumes; nothing else should.
#  4. krunvm's storage_volume in ~/Library/Preferences/rs.krunvm/krunvm.toml, so krunvm never
#     stops to ask for it. A different storage_volume that is already set is not changed: the
#     VMs defined there keep their containers on that volume. The script stops and says what to
#     do, or changes it with --force (keeping a copy of the file).
#  5. storage.conf (vfs driver; graph root <volume>/root, the one krunvm gives buildah),
#     policy.json and registries.conf in <state dir>/containers, where agent's image store
#     reads them. agent checks these files and never rewrites them.
#  6. Prints the `export` lines for your shell profile.
#
# Usage: scripts/macos/setup.sh [options]
#   --dry-run             say what would be done, change nothing (runs on any OS, for smoke tests)
#   --volume-name NAME    APFS volume name (default krunvm); it is used at /Volumes/NAME
#   --mount DIR           use a case-sensitive volume you mount at DIR yourself (the script does
#                         not create volumes elsewhere than /Volumes, nor make such mounts last)
#   --container DISK      APFS container for a new volume (default: the one holding /)
#   --state-dir DIR       agent's state dir (default <volume>/agent)
#   --no-install          do not install anything with Homebrew; stop if something is missing
#   --allow-source-build  let Homebrew build from source when it has no bottle for this macOS
#   --force               repoint an existing, different krunvm storage_volume (see 4.)
set -euo pipefail

TAP=slp/krun
# Where macOS mounts volumes. Tests point it at a temp dir; nothing else should set it.
VOLUMES_DIR=${AGENT_SETUP_VOLUMES_DIR:-/Volumes}
VOLNAME=krunvm
MOUNT=''
CONTAINER=''
STATE_DIR=''
DRY_RUN=0
INSTALL=1
SOURCE_OK=0
FORCE=0
CHANGES=''

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

# Notes a change (made, or in --dry-run to be made) for the summary at the end.
changed() {
  CHANGES="${CHANGES}  - $*"$'\n'
}

# Runs a command that changes something, or shows it in --dry-run mode.
run() {
  if [ "$DRY_RUN" = 1 ]; then
    printf '[dry-run] would run:' >&2
    printf ' %q' "$@" >&2
    printf '\n' >&2
  else
    printf 'setup: running:' >&2
    printf ' %q' "$@" >&2
    printf '\n' >&2
    "$@"
  fi
}

stamp() {
  date +%Y%m%d-%H%M%S
}

# Keeps a copy of FILE next to it before it is changed; prints the copy's path.
backup() {
  local file=$1 copy n=1
  copy="$file.bak-$(stamp)"
  while [ -e "$copy" ]; do
    n=$((n + 1))
    copy="$file.bak-$(stamp)-$n"
  done
  cp -p "$file" "$copy"
  printf '%s' "$copy"
}

# write_file PATH: content on stdin. Leaves an identical file alone; keeps a copy of a different one.
write_file() {
  local path=$1 content copy
  content=$(cat)
  if [ -f "$path" ] && [ "$(cat "$path")" = "$content" ]; then
    say "unchanged: $path"
    return 0
  fi
  if [ "$DRY_RUN" = 1 ]; then
    if [ -f "$path" ]; then
      printf '[dry-run] would replace %s (keeping a copy) with:\n' "$path" >&2
    else
      printf '[dry-run] would write %s:\n' "$path" >&2
    fi
    printf '%s\n' "$content" | sed 's/^/    | /' >&2
    changed "write $path"
    return 0
  fi
  mkdir -p "$(dirname "$path")"
  if [ -f "$path" ]; then
    copy=$(backup "$path")
    say "replacing $path, which differs from what this script writes; the old one is kept as $copy"
    changed "replaced $path (old one kept as $copy)"
  else
    changed "wrote $path"
  fi
  printf '%s\n' "$content" >"$path.tmp.$$"
  chmod 0644 "$path.tmp.$$"
  mv -f "$path.tmp.$$" "$path"
  say "wrote: $path"
}

while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --no-install) INSTALL=0 ;;
    --allow-source-build) SOURCE_OK=1 ;;
    --force) FORCE=1 ;;
    --mount) MOUNT=${2:?--mount needs a directory}; shift ;;
    --volume-name) VOLNAME=${2:?--volume-name needs a name}; shift ;;
    --container) CONTAINER=${2:?--container needs an APFS container such as disk3}; shift ;;
    --state-dir) STATE_DIR=${2:?--state-dir needs a directory}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
  shift
done

case $VOLNAME in
  '' | *[!A-Za-z0-9_.-]*) die "--volume-name must be letters, digits, '.', '_' or '-', got: $VOLNAME" ;;
esac
CUSTOM_MOUNT=1
if [ -z "$MOUNT" ]; then
  MOUNT="$VOLUMES_DIR/$VOLNAME"
  CUSTOM_MOUNT=0
fi
for dir in "$MOUNT" "${STATE_DIR:-/}"; do
  case $dir in
    /*) ;;
    *) die "paths must be absolute, got: $dir" ;;
  esac
  case $dir in
    *:* | *'"'* | *"'"* | *\\* | *$'\n'*) die "paths cannot contain ':', quotes, '\\' or newlines (krunvm and TOML would misread them): $dir" ;;
  esac
done
MOUNT=${MOUNT%/}
STATE_DIR=${STATE_DIR:-$MOUNT/agent}

# ------------------------------------------------------------------ 1. this Mac
OS=$(uname -s)
ON_MAC=0
[ "$OS" = Darwin ] && ON_MAC=1
if [ "$ON_MAC" = 0 ] && [ "$DRY_RUN" = 0 ]; then
  die "this script sets up krunvm on macOS only (this is $OS). On Linux, build krunvm with libkrun on a host with KVM, or use --launcher gvisor. Run with --dry-run to see what it would do."
fi
if [ "$DRY_RUN" = 1 ]; then say "dry run: nothing will be changed"; fi

if [ "$ON_MAC" = 1 ]; then
  ARCH=$(uname -m)
  if [ "$ARCH" != arm64 ]; then
    if [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || true)" = 1 ]; then
      die "this shell runs under Rosetta (uname -m says $ARCH on an Apple-silicon Mac). krunvm, buildah and Homebrew must be the native arm64 ones: open a terminal that is not set to \"Open using Rosetta\", or run: arch -arm64 /bin/bash $0"
    fi
    die "krunvm on macOS needs Apple silicon (libkrun runs arm64 guests with Hypervisor.framework); this Mac is $ARCH. Use a Linux host with KVM, or agent's gvisor launcher on Linux."
  fi
  if [ "$(sysctl -n kern.hv_support 2>/dev/null || true)" != 1 ]; then
    die "Hypervisor.framework is not available here (sysctl kern.hv_support is not 1). This happens inside a virtual machine without nested virtualisation; krunvm needs a real Mac."
  fi
  say "macOS $(sw_vers -productVersion) on $ARCH, Hypervisor.framework available"
fi

# ------------------------------------------------------------------ krunvm's TOML, read before anything changes
# krunvm 0.2.x keeps its settings here on macOS (confy; XDG_CONFIG_HOME is not read on macOS).
KRUNVM_TOML="$HOME/Library/Preferences/rs.krunvm/krunvm.toml"

# Prints storage_volume from a krunvm TOML (top level, 'literal' as krunvm writes it, or "basic").
toml_storage_volume() {
  awk '
    /^[ \t]*\[/ { exit }
    /^[ \t]*storage_volume[ \t]*=/ {
      v = $0
      sub(/^[ \t]*storage_volume[ \t]*=[ \t]*/, "", v)
      q = substr(v, 1, 1)
      if (q != "\047" && q != "\"") { print "\001unreadable"; exit }
      rest = substr(v, 2)
      end = index(rest, q)
      if (end == 0) { print "\001unreadable"; exit }
      val = substr(rest, 1, end - 1)
      if (q == "\"" && index(val, "\\") > 0) { print "\001unreadable"; exit }
      print val
      exit
    }' "$1"
}

# The names of the VMs krunvm defines in a TOML, on one line.
toml_vm_names() {
  awk '/^[ \t]*\[vmconfig_map\./ {
      n = $0; sub(/^[ \t]*\[vmconfig_map\./, "", n); sub(/\][ \t]*$/, "", n); gsub(/["\047]/, "", n)
      if (index(n, ".") == 0) printf "%s ", n
    }' "$1"
}

CURRENT_VOLUME=''
if [ -f "$KRUNVM_TOML" ]; then
  CURRENT_VOLUME=$(toml_storage_volume "$KRUNVM_TOML")
  case $CURRENT_VOLUME in
    $'\001'*) die "cannot read storage_volume in $KRUNVM_TOML; fix that line (storage_volume = '/Volumes/krunvm') and run this again" ;;
  esac
fi
CURRENT_VOLUME=${CURRENT_VOLUME%/}
REPOINT=0
if [ -n "$CURRENT_VOLUME" ] && [ "$CURRENT_VOLUME" != "$MOUNT" ]; then
  VMS=$(toml_vm_names "$KRUNVM_TOML")
  STRANDED='any VMs made before without their containers'
  [ -z "$VMS" ] || STRANDED="these VMs without their containers: ${VMS% }"
  if [ "$FORCE" = 0 ]; then
    die "krunvm already keeps its images and VMs on $CURRENT_VOLUME (storage_volume in $KRUNVM_TOML), not $MOUNT. Changing it would leave $STRANDED. Nothing was changed.
  To keep using it: run this again with --mount $CURRENT_VOLUME
  To move to $MOUNT: delete those VMs first (krunvm delete NAME), then run this again with --force (the old file is kept as a .bak copy)"
  fi
  REPOINT=1
  say "warning: --force: krunvm's storage_volume changes from $CURRENT_VOLUME to $MOUNT${VMS:+; these VMs will no longer start: ${VMS% }}"
fi

# ------------------------------------------------------------------ 2. krunvm and buildah
have() { command -v "$1" >/dev/null 2>&1; }

# has_line TEXT LINE: whether LINE is one of TEXT's lines. (Not `cmd | grep -q`: with pipefail, grep
# quitting early can kill cmd with SIGPIPE and turn a match into a failure.)
has_line() {
  case $'\n'"$1"$'\n' in
    *$'\n'"$2"$'\n'*) return 0 ;;
    *) return 1 ;;
  esac
}

# The tap's formulae, in the order Homebrew would install them.
FORMULAE="libkrunfw libkrun buildah krunvm"

if [ "$ON_MAC" = 1 ]; then
  have brew || die "Homebrew is needed to install krunvm and buildah: see https://brew.sh, then run this again"
  INSTALLED=$(brew list --formula --full-name 2>/dev/null || true)
  MISSING=''
  for f in $FORMULAE; do
    if has_line "$INSTALLED" "$TAP/$f"; then
      say "installed: $TAP/$f ($(brew list --versions "$TAP/$f" | awk '{print $2}'))"
    else
      MISSING="$MISSING $f"
    fi
  done
  if [ -n "$MISSING" ]; then
    [ "$INSTALL" = 1 ] || die "not installed:$MISSING (and --no-install was given): brew install $TAP/buildah $TAP/krunvm"
    if ! has_line "$(brew tap)" "$TAP"; then
      say "adding the Homebrew tap $TAP (github.com/slp/homebrew-krun), where krunvm and its macOS buildah come from"
      run brew tap "$TAP"
      changed "brew tap $TAP"
    fi
    # `brew info` marks a formula "(bottled)" when a ready-made build exists for this macOS.
    FROM_SOURCE=''
    for f in $MISSING; do
      if [ "$DRY_RUN" = 1 ] && ! has_line "$(brew tap)" "$TAP"; then
        say "(dry run: whether Homebrew has bottles for this macOS is known only once the tap is added)"
        break
      fi
      # Its title line: "==> slp/krun/krunvm: stable 0.2.7 (bottled)".
      info=$(brew info "$TAP/$f" 2>/dev/null || true)
      title=$(awk -v name="$TAP/$f: " 'index($0, name) { print; exit }' <<<"$info")
      case $title in
        *'(bottled)'*) ;;
        *) FROM_SOURCE="$FROM_SOURCE $f" ;;
      esac
    done
    if [ -n "$FROM_SOURCE" ] && [ "$SOURCE_OK" = 0 ]; then
      die "Homebrew has no ready-made bottle of$FROM_SOURCE for macOS $(sw_vers -productVersion), so it would build from source: that needs the Xcode command line tools, Rust and Go, downloads a lot and can take most of an hour. To do that, run this again with --allow-source-build."
    fi
    [ -z "$FROM_SOURCE" ] || say "warning: building$FROM_SOURCE from source (--allow-source-build): this takes a long time"
    run brew install "$TAP/buildah" "$TAP/krunvm"
    changed "brew install $TAP/buildah $TAP/krunvm (with its libkrun and libkrunfw)"
  fi
  BREW_BIN="$(brew --prefix)/bin"
  for b in krunvm buildah; do
    found=$(command -v "$b" 2>/dev/null || true)
    if [ "$DRY_RUN" = 0 ] && [ "$found" != "$BREW_BIN/$b" ]; then
      say "warning: \`$b\` on your PATH is ${found:-missing}, not $BREW_BIN/$b from $TAP; agent runs the first one on PATH (or AGENT_KRUNVM / AGENT_BUILDAH)"
    fi
  done
else
  printf '[dry-run] would check Homebrew, then: brew tap %s; brew install %s/buildah %s/krunvm (only if missing)\n' "$TAP" "$TAP" "$TAP" >&2
fi

# ------------------------------------------------------------------ 3. case-sensitive APFS volume
# The same test krunvm runs: two names differing only in case must be two files.
case_sensitive() {
  local dir=$1 probe got
  probe="$dir/.agent-case-probe-$$"
  printf first >"${probe}-krunvm" || return 2
  printf second >"${probe}-krunVM" || { rm -f "${probe}-krunvm"; return 2; }
  got=$(cat "${probe}-krunvm")
  rm -f "${probe}-krunvm" "${probe}-krunVM"
  [ "$got" = first ]
}

mounted_at() {
  case $'\n'"$(mount)" in
    *$'\n'*" on $1 ("*) return 0 ;;
    *) return 1 ;;
  esac
}

PASSWORD_NOTE="macOS may ask for your password (or Touch ID) for this diskutil step: the prompt is macOS's own, and this script never sees or stores it."

# diskutil's text output is in the user's language; its -plist output is not, so that is what is read.
# plist_string KEY: the first <string> value of KEY in a plist on stdin (a here-string, not a
# pipe: awk stops at the first match, which could kill a writer with SIGPIPE under pipefail).
plist_string() {
  awk -v key="<key>$1</key>" '
    function value(line) { if (match(line, /<string>[^<]*<\/string>/)) { print substr(line, RSTART + 8, RLENGTH - 17); exit } }
    found { value($0); found = 0 }
    index($0, key) { found = 1; value(substr($0, index($0, key) + length(key))) }'
}

# The device identifiers (diskNsM) of the APFS volumes called NAME, from `diskutil apfs list -plist`
# (in each volume's dict, DeviceIdentifier comes before Name: plist keys are sorted).
volumes_named() {
  local list
  list=$(diskutil apfs list -plist) || die "diskutil apfs list failed; see its message above"
  awk -v want="$1" '
    /<key>DeviceIdentifier<\/key>/ { k = "dev"; next }
    /<key>Name<\/key>/ { k = "name"; next }
    k != "" && match($0, /<string>[^<]*<\/string>/) {
      v = substr($0, RSTART + 8, RLENGTH - 17)
      if (k == "dev") dev = v
      else if (v == want && dev != "") print dev
    }
    { k = "" }' <<<"$list"
}

check_volume() {
  if case_sensitive "$MOUNT"; then
    say "volume $MOUNT is mounted and case-sensitive"
  else
    die "$MOUNT is not case-sensitive; krunvm needs a case-sensitive APFS volume. Pick another --volume-name (this script then makes a new one), or remove that volume yourself (diskutil apfs deleteVolume) and run this again"
  fi
}

if [ "$ON_MAC" = 0 ]; then
  printf '[dry-run] would look up the APFS volume %s (diskutil apfs list), mount it, or create it: diskutil apfs addVolume <container of /> "Case-sensitive APFS" %s\n' "$VOLNAME" "$VOLNAME" >&2
elif mounted_at "$MOUNT"; then
  check_volume
elif [ "$CUSTOM_MOUNT" = 1 ]; then
  die "nothing is mounted at $MOUNT. With --mount, mount your case-sensitive volume there yourself (and see that it is mounted again after a restart, e.g. with an /etc/fstab line made with \`sudo vifs\`), or leave --mount out to use $VOLUMES_DIR/$VOLNAME, which macOS mounts by itself"
else
  DEVS=$(volumes_named "$VOLNAME")
  case $(printf '%s' "$DEVS" | awk 'NF { n++ } END { print n + 0 }') in
    0)
      if [ -e "$MOUNT" ]; then
        die "$MOUNT exists but no volume is mounted there, so macOS would mount a new volume somewhere else (\"$MOUNT 1\"). Look at what is in it; move it aside if it is not needed, then run this again"
      fi
      if [ -z "$CONTAINER" ]; then
        info=$(diskutil info -plist /) || die "diskutil info / failed; pass --container diskN (see \`diskutil apfs list\`)"
        CONTAINER=$(plist_string APFSContainerReference <<<"$info")
        [ -n "$CONTAINER" ] || die "cannot find the APFS container of /: pass --container diskN (see \`diskutil apfs list\`)"
      fi
      say "creating the case-sensitive APFS volume \"$VOLNAME\" in $CONTAINER: it shares that container's free space, erases nothing, and macOS mounts it at $VOLUMES_DIR/$VOLNAME"
      say "$PASSWORD_NOTE"
      run diskutil apfs addVolume "$CONTAINER" "Case-sensitive APFS" "$VOLNAME"
      changed "new APFS volume \"$VOLNAME\" in $CONTAINER, mounted at $MOUNT (remove it with: diskutil apfs deleteVolume $VOLNAME)"
      ;;
    1)
      DEV=$DEVS
      info=$(diskutil info -plist "$DEV") || die "diskutil info $DEV failed; see its message above"
      fs=$(plist_string FilesystemName <<<"$info")
      case $fs in
        *[Cc]ase-sensitive*) ;;
        *) die "the APFS volume \"$VOLNAME\" ($DEV) is \"$fs\", not case-sensitive; choose another --volume-name" ;;
      esac
      say "mounting the existing volume \"$VOLNAME\" ($DEV)"
      say "$PASSWORD_NOTE"
      run diskutil mount "$DEV"
      changed "mounted $DEV at $MOUNT"
      ;;
    *)
      die "there are several APFS volumes called \"$VOLNAME\" ($(printf '%s' "$DEVS" | tr '\n' ' ')); rename the one you do not want (diskutil rename DEVICE NEWNAME) or pass another --volume-name"
      ;;
  esac
  if [ "$DRY_RUN" = 0 ]; then
    mounted_at "$MOUNT" || die "the volume \"$VOLNAME\" is not mounted at $MOUNT after diskutil; see the volume in Disk Utility, and run this again"
    check_volume
  fi
fi

# ------------------------------------------------------------------ 4. krunvm's storage_volume
if [ ! -f "$KRUNVM_TOML" ]; then
  # A whole krunvm 0.2.x (version 1) file, as krunvm itself would write it, so it has no field to ask for.
  write_file "$KRUNVM_TOML" <<EOF
version = 1
default_cpus = 2
default_mem = 1024
default_dns = '1.1.1.1'
storage_volume = '$MOUNT'

[vmconfig_map]
EOF
elif [ "$CURRENT_VOLUME" = "$MOUNT" ]; then
  say "unchanged: $KRUNVM_TOML (storage_volume = '$MOUNT')"
elif [ "$DRY_RUN" = 1 ]; then
  printf "[dry-run] would set storage_volume = '%s' in %s (keeping a copy)\n" "$MOUNT" "$KRUNVM_TOML" >&2
  changed "storage_volume in $KRUNVM_TOML"
else
  copy=$(backup "$KRUNVM_TOML")
  awk -v line="storage_volume = '$MOUNT'" '
    !done && /^[ \t]*storage_volume[ \t]*=/ { print line; done = 1; next }
    !done && /^[ \t]*\[/ { print line; done = 1 }
    { print }
    END { if (!done) print line }' "$copy" >"$KRUNVM_TOML.tmp.$$"
  mv -f "$KRUNVM_TOML.tmp.$$" "$KRUNVM_TOML"
  if [ "$REPOINT" = 1 ]; then
    changed "krunvm's storage_volume repointed from $CURRENT_VOLUME to $MOUNT in $KRUNVM_TOML (--force; old file kept as $copy)"
  else
    changed "krunvm's storage_volume set to $MOUNT in $KRUNVM_TOML (it was empty; old file kept as $copy)"
  fi
  say "set storage_volume = '$MOUNT' in $KRUNVM_TOML"
fi

# ------------------------------------------------------------------ 5. buildah storage config
STORE="$STATE_DIR/containers"
write_file "$STORE/storage.conf" <<EOF
# Written by scripts/macos/setup.sh: the graph root krunvm gives buildah on macOS
# (--root $MOUNT/root --runroot $MOUNT/runroot), so agent and krunvm share images.
# vfs: the overlay driver exists only on Linux. agent checks this file and never rewrites it.
[storage]
driver = "vfs"
graphroot = "$MOUNT/root"
runroot = "$MOUNT/runroot"
EOF
write_file "$STORE/policy.json" <<'EOF'
{
  "default": [
    {
      "type": "insecureAcceptAnything"
    }
  ]
}
EOF
write_file "$STORE/registries.conf" <<'EOF'
# Written by scripts/macos/setup.sh
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
for d in "$MOUNT/root" "$MOUNT/runroot"; do
  if [ ! -d "$d" ]; then
    run mkdir -p "$d"
    changed "new directory $d"
  fi
done

# ------------------------------------------------------------------ 6. the environment
if [ -n "$CHANGES" ]; then
  if [ "$DRY_RUN" = 1 ]; then say "would change:"; else say "changed:"; fi
  printf '%s' "$CHANGES" >&2
else
  say "nothing to change: everything was already set up"
fi
say "done. Add these lines to your shell profile (~/.zshrc):"
printf 'export AGENT_STATE_DIR=%q\n' "$STATE_DIR"
printf '# for krunvm and buildah run by hand, so they use the same images as agent:\n'
printf 'export CONTAINERS_STORAGE_CONF=%q\n' "$STORE/storage.conf"
cat <<'EOF'
# Guest volumes (/in, /out, /persist, and so `--file`) are off by default on macOS: krunvm mounts
# them with virtio-fs (reworked in krunvm 0.2.5 and 0.2.6), and agent has not been verified with
# them on a Mac yet. Without them commands travel inline on the guest kernel command line (about
# 2000 bytes). To turn them on for VMs created afterwards:
# export AGENT_ENABLE_GUEST_VOLUMES=1
# krunvm cannot turn networking off: create krunvm VMs with `--network allow_all`.
EOF
