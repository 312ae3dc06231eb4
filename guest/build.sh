#!/usr/bin/env bash
# Builds the guest init as a static binary: it is bind-mounted into images whose libc we do not control.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$here/bin"
"${CC:-gcc}" -static -O2 -Wall -Wextra -s -o "$here/bin/agent-init.tmp" "$here/agent-init.c"
mv -f "$here/bin/agent-init.tmp" "$here/bin/agent-init"
echo "built $here/bin/agent-init"
