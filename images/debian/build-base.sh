#!/usr/bin/env bash
# Builds the shared Debian base image that every offline language recipe starts FROM:
# debootstrap (minbase) of a Debian suite from an apt mirror, committed with buildah.
#
# Usage: build-base.sh [TAG]            (default TAG: localhost/agent/debian:$AGENT_DEBIAN_SUITE)
# Environment:
#   AGENT_APT_MIRROR        apt mirror (default http://deb.debian.org/debian)
#   AGENT_DEBIAN_SUITE      suite (default: the TAG's tag when TAG is localhost/agent/debian:<suite>,
#                           else trixie). agent itself builds trixie and bookworm.
#   AGENT_BUILDAH           buildah binary (default buildah)
#   AGENT_SIGNATURE_POLICY  --signature-policy file for commit (optional)
#   AGENT_BASE_IF_MISSING   when 1, do nothing if TAG already exists (another build won a race)
#   CONTAINERS_STORAGE_CONF and friends select the image store, as for buildah itself.
#
# A failed build leaves nothing behind: the scratch container is removed, and the image is
# committed under a temporary name that is only tagged TAG once everything succeeded.
set -euo pipefail

tag_suite=""
case "${1:-}" in localhost/agent/debian:*) tag_suite=${1#localhost/agent/debian:} ;; esac
suite=${AGENT_DEBIAN_SUITE:-${tag_suite:-trixie}}
tag=${1:-localhost/agent/debian:$suite}
mirror=${AGENT_APT_MIRROR:-http://deb.debian.org/debian}
buildah=${AGENT_BUILDAH:-buildah}
policy=()
if [ -n "${AGENT_SIGNATURE_POLICY:-}" ]; then policy=(--signature-policy "$AGENT_SIGNATURE_POLICY"); fi

case "$mirror" in
  http://* | https://* | file:///*) ;;
  *) echo "build-base: AGENT_APT_MIRROR must be an http(s):// or file:/// URL (got '$mirror')" >&2; exit 2 ;;
esac
if ! [[ "$suite" =~ ^[a-z][a-z0-9-]*$ ]]; then
  echo "build-base: bad suite name '$suite'" >&2
  exit 2
fi
if [ -n "$tag_suite" ] && [ "$tag_suite" != "$suite" ]; then
  echo "build-base: $tag names suite '$tag_suite' but AGENT_DEBIAN_SUITE is '$suite'" >&2
  exit 2
fi
command -v debootstrap >/dev/null || { echo "build-base: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 5; }

if [ "${AGENT_BASE_IF_MISSING:-}" = 1 ] && "$buildah" inspect --type image --format '{{.FromImageID}}' "$tag" >/dev/null 2>&1; then
  echo "build-base: $tag already exists"
  exit 0
fi

name="agentimg-base-$$"
tmp_tag="localhost/agent/tmp-base-$$:building"
ctr=""
committed=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$ctr" ]; then
    "$buildah" umount "$ctr" >/dev/null 2>&1 || true
    "$buildah" rm "$ctr" >/dev/null 2>&1 || true
  fi
  if [ -n "$committed" ]; then "$buildah" rmi "$tmp_tag" >/dev/null 2>&1 || true; fi
  if [ "$rc" -ne 0 ]; then echo "build-base: failed (exit $rc); nothing was tagged $tag" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "build-base: debootstrap $suite (minbase) from $mirror"
ctr=$("$buildah" from --name "$name" scratch)
mnt=$("$buildah" mount "$ctr")
debootstrap --variant=minbase --components=main "$suite" "$mnt" "$mirror"

echo "build-base: configuring apt and dpkg"
printf 'deb %s %s main\n' "$mirror" "$suite" >"$mnt/etc/apt/sources.list"
cat >"$mnt/etc/apt/apt.conf.d/90agent" <<'APT'
// Written by agent's base recipe: small images, like `apt-get install --no-install-recommends`.
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Retries "3";
Acquire::Languages "none";
APT
cat >"$mnt/etc/dpkg/dpkg.cfg.d/90agent-nodoc" <<'DPKG'
# Written by agent's base recipe: no manuals or docs in sandboxes (licences are kept).
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
DPKG
# debootstrap installed its packages before the dpkg excludes existed: drop their docs too.
find "$mnt/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$mnt/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$mnt"/usr/share/man/* "$mnt"/usr/share/info/*
rm -rf "$mnt"/var/cache/apt/archives/*.deb "$mnt"/var/lib/apt/lists/* "$mnt"/var/log/*.log "$mnt"/var/log/apt/*
"$buildah" umount "$ctr" >/dev/null

"$buildah" config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 \
  --cmd /bin/sh \
  --label "org.opencontainers.image.title=agent Debian $suite base" \
  --label "org.opencontainers.image.description=debootstrap --variant=minbase $suite from $mirror" \
  --label "io.agent.apt-mirror=$mirror" \
  "$ctr"

echo "build-base: committing $tag"
committed=1
"$buildah" commit "${policy[@]}" --quiet --rm "$ctr" "$tmp_tag" >/dev/null
ctr=""
"$buildah" tag "$tmp_tag" "$tag"
"$buildah" rmi "$tmp_tag" >/dev/null
committed=""
echo "build-base: done: $tag"
