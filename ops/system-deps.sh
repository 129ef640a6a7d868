#!/usr/bin/env bash
# The Debian packages building and running the bridge needs, installed only when missing: a C
# toolchain and pkg-config (zstd, libsecp256k1), Node and npm (the pinned tools in ops/tools),
# cmake and the Boost headers (Bitcoin Core's kernel, built by crate bitcoinkernel for the
# regtest node), and promtool (Debian's `prometheus`: ops/test.sh checks the Prometheus config and
# alert rules with it; on a host with systemd the package also enables a Prometheus service), and
# Chromium (the web app's tests drive it headless over the DevTools protocol: ops/tests/web_app.rs).
# Used by .ci/run, ops/test.sh and ops/devnet.sh.
set -euo pipefail
need=()
command -v cc >/dev/null || need+=(build-essential)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v cmake >/dev/null || need+=(cmake)
[ -d /usr/include/boost ] || need+=(libboost-dev)
command -v promtool >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
[ "${#need[@]}" -eq 0 ] && exit 0
echo "installing Debian packages: ${need[*]}" >&2
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
