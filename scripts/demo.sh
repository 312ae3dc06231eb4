#!/usr/bin/env bash
# The main job, end to end on a fresh Debian machine (as root): install, build, make the four
# language images, create one VM per language, run hello in all of them, list, clean up.
# It uses its own state dir (default /var/lib/agent-demo) so it never touches your VMs.
# A second run is fast: packages, npm deps, build and images are all cached.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
step() { printf '\n==> %s\n' "$*" >&2; }

step "1/6 install what is missing and build agent"
bash "$root/scripts/setup.sh"
export AGENT_STATE_DIR="${AGENT_DEMO_STATE_DIR:-/var/lib/agent-demo}"
agent() { node "$root/packages/cli/bin/run.js" "$@"; }
languages=(python node ruby golang)

step "2/6 language images (state and image storage in $AGENT_STATE_DIR)"
for lang in "${languages[@]}"; do
  # Prefers the official remote image; builds from Debian packages when the registry is out of reach.
  if agent image list --json | grep -q "\"localhost/agent/$lang:latest\""; then
    echo "$lang: local image present" >&2
  elif AGENT_PULL_TIMEOUT=20 agent image pull "$(agent runtimes --json | node -e 'const d=JSON.parse(require("fs").readFileSync(0));console.log(d.runtimes.find(r=>r.language===process.argv[1]).image)' "$lang")" 2>/dev/null; then
    echo "$lang: pulled the official image" >&2
  else
    echo "$lang: registry unreachable, building from the offline recipe" >&2
    agent image build "$lang"
  fi
done

step "3/6 create one VM per language"
agent vm clean --all >/dev/null
for lang in "${languages[@]}"; do agent vm create --language "$lang"; done

step "4/6 hello in every VM (agent vm exec --hello --all)"
agent vm exec --hello --all

step "5/6 agent vm list"
agent vm list

step "6/6 clean up (agent vm clean --all)"
agent vm clean --all
step "done"
