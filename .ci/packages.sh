#!/usr/bin/env bash
# Install what the test suite needs from Debian: the Docker Engine, mmdebstrap for the base
# image, Go and the Go libraries swarm-listener is built with (deploy/swarm-listener/build.sh),
# PostgreSQL's binaries (the tests start their own private cluster from them), tcpdump (the
# multi-node tests capture the traffic between nodes) and, where Python lacks it, venv
# support.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

packages=(docker.io mmdebstrap tcpdump)
packages+=(golang-go golang-github-docker-docker-dev golang-github-prometheus-client-golang-dev)
# A machine may carry PostgreSQL's binaries without Debian's metapackage; those serve as well.
if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && id postgres >/dev/null 2>&1; then
  log "PostgreSQL binaries present: $(compgen -G '/usr/lib/postgresql/*/bin' | tr '\n' ' ')"
else
  packages+=(postgresql)
fi
# scripts/test makes a venv; Debian's python3 can only do that with python3-venv.
python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)
apt_install "${packages[@]}"
