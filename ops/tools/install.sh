#!/usr/bin/env bash
# Installs the pinned npm tools (anvil, cast, arlocal, arweave-js, solcjs, OpenZeppelin) into
# ops/tools/node_modules from the lock file. Tests and the devnet find the binaries in
# ops/tools/node_modules/.bin. Does nothing when the installed tree matches the lock file.
set -euo pipefail
cd "$(dirname "$0")"
stamp=node_modules/.bridge-installed-lock
if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then
  exit 0
fi
echo "ops/tools: installing pinned npm tools (npm ci)…" >&2
npm ci --no-audit --no-fund --loglevel=error
# The packages ship their binaries; no install script is needed (see ../shared/PARTS.md).
for tool in anvil cast arlocal solcjs; do
  test -x "node_modules/.bin/$tool" || { echo "ops/tools: $tool missing after npm ci" >&2; exit 1; }
done
cp package-lock.json "$stamp"
