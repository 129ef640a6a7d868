#!/usr/bin/env bash
# The README's start command: builds the workspace's binaries (the same debug build the tests
# use; a no-op when they are fresh), then runs `bridgectl devnet "$@"` (up | down | status |
# bench | pay-btc). `bash ops/devnet.sh up` starts the whole bridge on loopback in ./devnet.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
bash "$root/ops/system-deps.sh"
echo "building the workspace (the first time takes a while)…" >&2
cargo build --manifest-path "$root/Cargo.toml" --workspace --bins --locked
exec "$target/debug/bridgectl" devnet "$@"
