#!/usr/bin/env bash
# Build the PostgreSQL image of deploy/stack.postgres.yml from Debian's postgresql package,
# for swarms that cannot pull an official postgres image.
#
#   deploy/postgres/build-image.sh                  # swarm-oauth-postgres:local on debian:trixie-slim
#   BASE_IMAGE=local/python-base:trixie IMAGE=my/postgres:17 deploy/postgres/build-image.sh
#
# The base image must be Debian (or derived), present locally or pullable; the build
# fetches packages from its apt sources, through the host's network (--network host:
# containers may have no NAT, docs/testing.md). Extra arguments go to `docker build`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BASE_IMAGE=${BASE_IMAGE:-debian:trixie-slim}
IMAGE=${IMAGE:-swarm-oauth-postgres:local}

printf '==> docker build %s from %s\n' "$IMAGE" "$BASE_IMAGE" >&2
docker build --network host --force-rm --pull=false --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --tag "$IMAGE" "$@" "$here"
printf '==> built %s: %s\n' "$IMAGE" \
  "$(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1 / 1e6}')" >&2
