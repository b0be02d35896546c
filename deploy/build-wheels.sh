#!/usr/bin/env bash
# Fill deploy/wheels/ with every wheel the image needs, so that `docker build` installs
# with no network at all (build-image.sh; containers here have no NAT). Run it on any
# machine that reaches PyPI, or a mirror through PIP_INDEX_URL.
#
#   deploy/build-wheels.sh                          # for the Python of $BASE_IMAGE
#   BASE_IMAGE=local/python-base:trixie deploy/build-wheels.sh
#   PYTHON_VERSION=3.12 deploy/build-wheels.sh      # without asking Docker
#
# The project itself is built from this checkout (`pip wheel --no-deps`); its [server]
# dependencies are downloaded as binary wheels for the image's Python and platform, never
# built here, so what lands in the image is what PyPI ships.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
wheels="$here/wheels"
BASE_IMAGE=${BASE_IMAGE:-python:3.12-slim}
PIP=${PIP:-python3 -m pip}

log() { printf '==> %s\n' "$*" >&2; }

if [ -z "${PYTHON_VERSION:-}" ]; then
  # The wheels must match the interpreter inside the image, not the one on this host.
  PYTHON_VERSION=$(docker run --rm --network none --entrypoint python3 "$BASE_IMAGE" -c \
    'import sys; print("%d.%d" % sys.version_info[:2])')
fi
arch=${ARCH:-$(uname -m)}
log "wheels for Python $PYTHON_VERSION on linux/$arch (image $BASE_IMAGE) into $wheels"

mkdir -p "$wheels"
# Dependencies already downloaded are kept (pip skips them); the project's own wheel is
# always rebuilt from the checkout. `rm -rf deploy/wheels` starts over.
rm -f "$wheels"/swarm_oauth-*.whl
$PIP wheel --quiet --no-deps --wheel-dir "$wheels" "$root"
project=$(ls "$wheels"/swarm_oauth-*.whl)
# manylinux2014 (glibc 2.17) is the baseline every Debian-based Python image satisfies;
# manylinux_2_28 admits packages that stopped publishing 2014 wheels.
$PIP download --quiet --only-binary=:all: --implementation cp \
  --python-version "$PYTHON_VERSION" \
  --platform "manylinux2014_$arch" --platform "manylinux_2_28_$arch" \
  --dest "$wheels" "$project[server]"
# For build-image.sh: wheels made for another base image may not fit this one's Python.
printf '%s\n' "$BASE_IMAGE" >"$wheels/.base-image"
log "$(ls "$wheels" | wc -l) wheels, $(du -sh "$wheels" | cut -f1)"
