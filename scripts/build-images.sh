#!/usr/bin/env bash
# Builds the Debian bases and the language images the tests boot, offline (from Debian packages),
# into the image store chosen by the environment, through the built CLI: the trixie base and the
# four languages (python 3.13, node 20, ruby 3.3, go 1.24), plus the bookworm base with python@3.11
# and node@18 for the version-selection test. Idempotent: a second run only checks the layer cache.
#
#   AGENT_STATE_DIR=$(mktemp -d) AGENT_IMAGE_STORE=/var/tmp/agent-test-images bash scripts/build-images.sh
#
# Environment: AGENT_STATE_DIR / AGENT_IMAGE_STORE (where images go; without either, the
# host's normal container storage is used), AGENT_APT_MIRROR (Debian mirror),
# AGENT_LANGUAGES (space-separated `agent image build` arguments; default
# "python node ruby golang python@3.11 node@18").
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cli="$root/packages/cli/bin/run.js"
if [ ! -d "$root/packages/cli/dist/commands" ]; then
  echo "build-images: packages/cli is not built; run \`npm run build\` first" >&2
  exit 1
fi
read -r -a languages <<<"${AGENT_LANGUAGES:-python node ruby golang python@3.11 node@18}"

if [ -n "${AGENT_IMAGE_STORE:-}" ]; then store=$AGENT_IMAGE_STORE
elif [ -n "${AGENT_STATE_DIR:-}" ]; then store=$AGENT_STATE_DIR/containers
else store="the host's container storage"; fi
echo "build-images: image store: $store" >&2
for lang in "${languages[@]}"; do
  start=$SECONDS
  echo "build-images: $lang" >&2
  node "$cli" image build "$lang"
  echo "build-images: $lang done in $((SECONDS - start))s" >&2
done
node "$cli" image list
