#!/usr/bin/env bash
# Build the Python base image (local/python-base:trixie) with mmdebstrap, once per machine:
# no registry can be pulled from here (docs/testing.md). Safe to re-run and to run twice at
# once; the tests call it too when the image is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

present() { docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; }

if present; then
  log "base image $BASE_IMAGE already built"
  exit 0
fi
command -v mmdebstrap >/dev/null || apt_install mmdebstrap

# Two builds at once (two test sessions) would both spend the time; the second waits instead.
exec 9>"${TMPDIR:-/tmp}/swarm-oauth-base-image.lock"
flock 9
if present; then
  log "base image $BASE_IMAGE built meanwhile"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "building $BASE_IMAGE with mmdebstrap (about a minute)"
# Into a file first, not a pipe: a build that fails half-way must not leave a truncated
# image behind that the guard above would then take for a good one.
mmdebstrap --quiet --variant=minbase \
  --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
  trixie "$work/rootfs.tar" "deb http://deb.debian.org/debian trixie main" \
  || die "mmdebstrap failed"
docker import --change 'ENV PYTHONUNBUFFERED=1' --change 'CMD ["python3"]' \
  "$work/rootfs.tar" "$BASE_IMAGE" >/dev/null
if ! version=$(docker run --rm --network none "$BASE_IMAGE" python3 -c \
  'import sys, venv; print(sys.version.split()[0])'); then
  docker image rm "$BASE_IMAGE" >/dev/null 2>&1 || true
  die "the imported image $BASE_IMAGE does not run python3; removed it"
fi
log "built $BASE_IMAGE (Python $version, $(docker image inspect --format '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%d MB", $1 / 1e6}'))"
