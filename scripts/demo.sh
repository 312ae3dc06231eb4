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

# ---------------------------------------------------------------- agent serve + the E2B SDK
step "serve: agent serve with a warm python pool, driven by the real e2b SDK"
serve_port="${AGENT_DEMO_SERVE_PORT:-49982}"
export AGENT_API_KEY="${AGENT_API_KEY:-demo-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
node "$root/packages/cli/bin/run.js" serve --listen "127.0.0.1:$serve_port" --pool python=1 &
serve_pid=$!
trap 'kill -TERM "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null' EXIT
for _ in $(seq 1 120); do
  # Ready when it answers and its pool VM is booted (/health counts the warm VMs).
  if curl -fsS "http://127.0.0.1:$serve_port/health" 2>/dev/null | grep -q '"python":1'; then break; fi
  sleep 0.5
done
# shellcheck disable=SC2016 # the program is JavaScript: its ${...} are not the shell's
E2B_API_URL="http://127.0.0.1:$serve_port" E2B_SANDBOX_URL="http://127.0.0.1:$serve_port" E2B_API_KEY="$AGENT_API_KEY" \
  node --input-type=module -e '
import {createRequire} from "node:module"
const {Sandbox} = await import(createRequire(process.argv[1] + "/package.json").resolve("e2b"))
const t0 = performance.now()
const sbx = await Sandbox.create("python", {timeoutMs: 60_000})
await sbx.commands.run("true")
const ms = performance.now() - t0
const first = await sbx.commands.run("python3 -c \"print(6 * 7)\"")
await sbx.files.write("/home/user/hello.txt", "written through the SDK")
console.log(`sandbox ${sbx.sandboxId}: python says ${first.stdout.trim()}, file says "${await sbx.files.read("/home/user/hello.txt")}"`)
console.log(`create-to-first-command: ${ms.toFixed(0)} ms (warm pool)`)
await sbx.kill()
' "$root"
kill -TERM "$serve_pid"
wait "$serve_pid" || true
trap - EXIT
step "serve: done (server stopped, pool VM cleaned)"
