#!/usr/bin/env bash
# Build the Python base image (local/python-base:trixie) with mmdebstrap, once per machine:
# no registry can be pulled from here (docs/testing.md). Safe to re-run and to run twice at
# once; the tests call it too when the image is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

build() {
  log "building $BASE_IMAGE with mmdebstrap (about a minute)"
  # shellcheck disable=SC2016 # $1 is mmdebstrap's, the root filesystem
  debian_image "$BASE_IMAGE" python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    -- --change 'ENV PYTHONUNBUFFERED=1' --change 'CMD ["python3"]'
  local version
  if ! version=$(docker run --rm --network none "$BASE_IMAGE" python3 -c \
    'import sys, venv; print(sys.version.split()[0])'); then
    docker image rm "$BASE_IMAGE" >/dev/null 2>&1 || true
    die "the imported image $BASE_IMAGE does not run python3; removed it"
  fi
  log "built $BASE_IMAGE (Python $version, $(docker image inspect --format '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%d MB", $1 / 1e6}'))"
}

build_once "$BASE_IMAGE" build
