#!/usr/bin/env bash
# The test command: installs what is missing (Debian packages, the pinned npm tools the tests
# drive), checks the deployment's Prometheus config and alert rules with promtool, then runs
# every test of the workspace (doc tests if any, then all other tests in parallel with cargo-nextest;
# .config/nextest.toml starts the slowest first).
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
# Doc tests, when a doc comment holds a code block: their build resolves features apart from
# nextest's and so compiles most dependencies a second time (2 to 5 minutes of CI) even when
# there is no doc test at all, as today (examples live in tests/).
if grep -rqE '^\s*(///|//!)\s*```' --include='*.rs' --exclude-dir=target --exclude-dir=node_modules .; then
  cargo test --workspace --doc
fi
cargo nextest run --workspace --no-fail-fast "$@"
