#!/usr/bin/env bash
# Build an image of dockerflow's swarm-listener from the source archive in this directory,
# for swarms that cannot pull dockerflow/docker-flow-swarm-listener (build.sh has the
# details and the Debian packages it needs).
#
#   deploy/swarm-listener/build-image.sh                    # swarm-listener:local on debian:trixie-slim
#   BASE_IMAGE=local/python-base:trixie IMAGE=my/swarm-listener:1 deploy/swarm-listener/build-image.sh
#
# Then deploy deploy/stack.swarm-listener.yml with SWARM_LISTENER_IMAGE=<that image>. Extra
# arguments go to `docker build`. The base image must be present locally or pullable; any
# base with bash serves (the binary is static, and the health check uses bash).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BASE_IMAGE=${BASE_IMAGE:-debian:trixie-slim}
IMAGE=${IMAGE:-swarm-listener:local}

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
"$here/build.sh" "$context/docker-flow-swarm-listener"
# The MIT licence asks that its notice travel with every copy of the software.
tar -xzf "$here/docker-flow-swarm-listener-e7128a5.tar.gz" -O \
  docker-flow-swarm-listener/LICENSE.md >"$context/LICENSE.md"
cp "$here/Dockerfile" "$context/"
printf '==> docker build %s from %s\n' "$IMAGE" "$BASE_IMAGE" >&2
docker build --quiet --force-rm --pull=false --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --tag "$IMAGE" "$@" "$context" >/dev/null
printf '==> built %s\n' "$IMAGE" >&2
