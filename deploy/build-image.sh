#!/usr/bin/env bash
# Build the swarm-oauth image from deploy/wheels/; deploy/ is the whole build context.
#
#   deploy/build-image.sh                                # swarm-oauth:local on python:3.12-slim
#   BASE_IMAGE=local/python-base:trixie deploy/build-image.sh
#   REBUILD_WHEELS=1 deploy/build-image.sh               # after changing the code
#   IMAGE=registry.example.com/swarm-oauth:1 deploy/build-image.sh --build-arg PIP_NO_INDEX=0
#
# build-wheels.sh runs first when deploy/wheels/ holds no project wheel yet or wheels made
# for another BASE_IMAGE (whose Python may differ), or always with REBUILD_WHEELS=1. Extra arguments go to `docker build`. --network host: containers may
# have no NAT (docs/testing.md); the build needs no network at all unless PIP_NO_INDEX=0.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BASE_IMAGE=${BASE_IMAGE:-python:3.12-slim}
IMAGE=${IMAGE:-swarm-oauth:local}

log() { printf '==> %s\n' "$*" >&2; }

# Two builds at once (two test sessions) would rewrite wheels/ under each other.
exec 9>"${TMPDIR:-/tmp}/swarm-oauth-build-image.lock"
flock 9
made_for=$(cat "$here/wheels/.base-image" 2>/dev/null || true)
if [ -n "${REBUILD_WHEELS:-}" ] || ! compgen -G "$here/wheels/swarm_oauth-*.whl" >/dev/null \
  || [ "$made_for" != "$BASE_IMAGE" ]; then
  BASE_IMAGE=$BASE_IMAGE "$here/build-wheels.sh"
fi
log "docker build $IMAGE from $BASE_IMAGE"
docker build --network host --force-rm --pull=false \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" --tag "$IMAGE" --file "$here/Dockerfile" "$@" "$here"
log "built $IMAGE: $(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1 / 1e6}')"
