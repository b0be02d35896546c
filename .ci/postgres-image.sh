#!/usr/bin/env bash
# Build the PostgreSQL image the multi-node tests deploy (deploy/postgres/build-image.sh on
# the base image), once per machine, and print its name on stdout. The tag is a digest of
# the build's inputs. Safe to re-run and to run twice at once; the tests call it to learn
# the name, and it builds the image then if it is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"
src="$here/../deploy/postgres"
IMAGE=local/swarm-oauth-postgres:$(inputs_digest "$src")

build() {
  log "building $IMAGE from $BASE_IMAGE (about a minute: it fetches Debian's packages)"
  BASE_IMAGE=$BASE_IMAGE IMAGE=$IMAGE bash "$src/build-image.sh" --quiet >/dev/null
}

build_once "$IMAGE" build
echo "$IMAGE"
