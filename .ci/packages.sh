#!/usr/bin/env bash
# Install what the test suite needs from Debian: the Docker Engine, mmdebstrap for the base
# image, Go and the Go libraries swarm-listener is built with (deploy/swarm-listener/build.sh),
# PostgreSQL's binaries (the tests start their own private cluster from them), promtool (in
# the prometheus package; it checks deploy/observability/), nginx, Caddy and busybox (the
# forward-auth tests run them on loopback with configs of their own), tcpdump (the
# multi-node tests capture the traffic between nodes) and, where Python lacks it, venv
# support.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

packages=(docker.io mmdebstrap prometheus tcpdump)
packages+=(golang-go golang-github-docker-docker-dev golang-github-prometheus-client-golang-dev)
packages+=(nginx caddy busybox)
# A machine may carry PostgreSQL's binaries without Debian's metapackage; those serve as well.
if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && id postgres >/dev/null 2>&1; then
  log "PostgreSQL binaries present: $(compgen -G '/usr/lib/postgresql/*/bin' | tr '\n' ' ')"
else
  packages+=(postgresql)
fi
# Node.js and npm for Prism and oidc-provider (.ci/node-tools.sh); a machine may carry them
# from elsewhere (NodeSource), which serves as well.
command -v npm >/dev/null || packages+=(nodejs npm)
# scripts/test makes a venv; Debian's python3 can only do that with python3-venv.
python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)
apt_install "${packages[@]}"
