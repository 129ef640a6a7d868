#!/usr/bin/env bash
# The README's start command: builds the workspace's binaries (the same debug build the tests
# use; a no-op when they are fresh), then runs `bridgectl devnet "$@"` (up | down | status |
# bench | pay-btc). `bash ops/devnet.sh up` starts the whole bridge on loopback in ./devnet.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --manifest-path "$root/Cargo.toml" --workspace --bins --locked --quiet
exec "$target/debug/bridgectl" devnet "$@"
