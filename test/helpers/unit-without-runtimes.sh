#!/usr/bin/env bash
# Runs the unit project with runsc, runc, buildah, krunvm, crun and slirp4netns hidden from PATH,
# to show that unit tests need none of them (issue 12). Everything else on PATH stays reachable
# through a throw-away directory of symlinks.
#
#   bash test/helpers/unit-without-runtimes.sh [extra vitest args]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=$(mktemp -d /tmp/agent-unit-path-XXXXXX)
trap 'rm -rf "$bin"' EXIT
hidden=" runsc runc buildah krunvm crun slirp4netns podman "
IFS=: read -r -a dirs <<<"$PATH"
for d in "${dirs[@]}"; do
  [ -d "$d" ] || continue
  for f in "$d"/*; do
    name=${f##*/}
    [[ $hidden == *" $name "* ]] && continue
    [ -e "$bin/$name" ] || ln -s "$f" "$bin/$name"
  done
done
for b in runsc runc buildah krunvm; do
  if PATH=$bin command -v "$b" >/dev/null; then echo "unit-without-runtimes: $b is still on PATH" >&2; exit 1; fi
done
cd "$root"
PATH=$bin node node_modules/vitest/vitest.mjs run --project unit "$@"
