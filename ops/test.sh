#!/usr/bin/env bash
# The test command: installs what is missing (Debian packages, the pinned npm tools the tests
# drive), checks the deployment's Prometheus config and alert rules with promtool, then runs
# every test of the workspace (doc tests, then all other tests in parallel with cargo-nextest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash ops/system-deps.sh
bash ops/tools/install.sh
# The deployment files are checked, not only documented: the config parses and names its rule
# file, and the alert rules behave as alerts.test.yml says.
(cd ops/deploy/prometheus && promtool check config prometheus.yml && promtool test rules alerts.test.yml)
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest…" >&2
  cargo install cargo-nextest --locked
fi
cargo test --workspace --doc
cargo nextest run --workspace --no-fail-fast "$@"
