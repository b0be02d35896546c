#!/usr/bin/env bash
# Build the swarm node image (local/swarm-node:trixie) with mmdebstrap, once per machine: a
# Docker Engine from Debian's packages that the multi-node tests run as nested nodes, one
# container each (tests/support/multinode.py). No registry can be pulled from here
# (docs/testing.md). Safe to re-run and to run twice at once; the tests call it too when
# the image is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

NODE_IMAGE=${NODE_IMAGE:-local/swarm-node:trixie}

build() {
  log "building $NODE_IMAGE with mmdebstrap (about a minute)"
  # trixie ships the engine's client apart (docker-cli). iptables: the engine programs
  # the rules of encrypted overlays with it even when told to leave NAT alone.
  debian_image "$NODE_IMAGE" docker.io,docker-cli,iptables,ca-certificates,procps,iproute2 \
    -- --change 'CMD ["dockerd"]'
  local version
  if ! version=$(docker run --rm --network none --entrypoint dockerd "$NODE_IMAGE" --version); then
    docker image rm "$NODE_IMAGE" >/dev/null 2>&1 || true
    die "the imported image $NODE_IMAGE does not run dockerd; removed it"
  fi
  log "built $NODE_IMAGE ($version, $(docker image inspect --format '{{.Size}}' "$NODE_IMAGE" | awk '{printf "%d MB", $1 / 1e6}'))"
}

build_once "$NODE_IMAGE" build
