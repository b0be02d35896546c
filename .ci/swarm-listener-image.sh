#!/usr/bin/env bash
# Build the swarm-listener image the tests run (deploy/swarm-listener/build-image.sh on the
# base image), once per machine, and print its name on stdout. The tag is a digest of the
# build's inputs, so a changed Dockerfile or script gets a new image rather than a stale
# one. Safe to re-run and to run twice at once; the tests call it when the image is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"
src="$here/../deploy/swarm-listener"

digest=$({
  printf '%s\n' "$BASE_IMAGE"
  cat "$src"/*
} | sha256sum | cut -c1-12)
IMAGE=local/swarm-listener:$digest

present() { docker image inspect "$IMAGE" >/dev/null 2>&1; }

if ! present; then
  # Two sessions at once would both spend the build; the second waits and reuses it.
  exec 9>"${TMPDIR:-/tmp}/swarm-oauth-swarm-listener-image.lock"
  flock 9
  if present; then
    log "swarm-listener image $IMAGE built meanwhile"
  else
    log "building $IMAGE from $BASE_IMAGE (about 30 s)"
    BASE_IMAGE=$BASE_IMAGE IMAGE=$IMAGE bash "$src/build-image.sh"
  fi
fi
echo "$IMAGE"
