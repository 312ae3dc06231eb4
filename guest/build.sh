#!/usr/bin/env bash
# Builds the guest init as a static binary: it is bind-mounted into images whose libc we do not control.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# agent-init is a static Linux binary for the gvisor and runc launchers. macOS cannot link it and
# its launcher (krunvm) does not use it, so a Mac build skips it instead of failing.
if [ "$(uname -s)" = Darwin ] && [ -z "${CC:-}" ]; then
  echo "skipped the guest init on macOS (only the Linux launchers gvisor and runc use it)"
  exit 0
fi
mkdir -p "$here/bin"
"${CC:-gcc}" -static -O2 -Wall -Wextra -s -o "$here/bin/agent-init.tmp" "$here/agent-init.c"
mv -f "$here/bin/agent-init.tmp" "$here/bin/agent-init"
echo "built $here/bin/agent-init"
