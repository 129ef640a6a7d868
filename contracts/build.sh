#!/usr/bin/env bash
# Compiles the vault and the test-only contracts with the pinned solcjs and OpenZeppelin
# (ops/tools) into contracts/artifacts/<Contract>.json ({"abi": …, "bytecode": "0x…"}, what alloy's `sol!` reads). The artifacts are committed;
# `cargo test -p contracts artifacts_are_up_to_date` recompiles and fails if they differ.
# Usage: contracts/build.sh [output dir]   (default: contracts/artifacts)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/contracts/artifacts}"
tools="$root/ops/tools"
bash "$tools/install.sh"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$root/contracts"
"$tools/node_modules/.bin/solcjs" --bin --abi --optimize --optimize-runs 200 \
  --base-path . --include-path "$tools/node_modules" -o "$tmp" \
  sol/Vault.sol sol/test/TestToken.sol sol/test/Bip340Gas.sol sol/test/Spoofer.sol sol/test/Recipients.sol >/dev/null
mkdir -p "$out"
# solcjs names outputs <path_with_underscores>_<Contract>.{abi,bin}; keep the ones we use.
for contract in Vault TestToken FeeToken BlacklistToken Bip340Gas Spoofer RevertingRecipient GasBurner ReturnBomb; do
  abi="$(ls "$tmp"/*_"$contract".abi | head -n1)"
  bin="$(ls "$tmp"/*_"$contract".bin | head -n1)"
  node -e '
    const fs = require("fs");
    const abi = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
    const bytecode = "0x" + fs.readFileSync(process.argv[2], "utf8").trim();
    fs.writeFileSync(process.argv[3], JSON.stringify({ abi, bytecode }, null, 1) + "\n");
  ' "$abi" "$bin" "$out/$contract.json"
done
