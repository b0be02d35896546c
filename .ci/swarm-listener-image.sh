#!/usr/bin/env bash
# Build the swarm-listener image the tests run (deploy/swarm-listener/build-image.sh on the
# base image), once per machine, and print its name on stdout. The tag is a digest of the
# build's inputs, so a changed Dockerfile or script gets a new image rather than a stale
# one. Safe to re-run and to run twice at once; the tests call it when the image is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"
src="$here/../deploy/swarm-listener"
IMAGE=local/swarm-listener:$(inputs_digest "$src")

build() {
  log "building $IMAGE from $BASE_IMAGE (about 30 s)"
  BASE_IMAGE=$BASE_IMAGE IMAGE=$IMAGE bash "$src/build-image.sh"
}

build_once "$IMAGE" build
echo "$IMAGE"
