# shellcheck shell=bash
# Shared by the .ci scripts: source it, do not run it.

# The base image every swarm test and the deployment image build on (docs/testing.md).
BASE_IMAGE=${BASE_IMAGE:-local/python-base:trixie}

log() { printf '==> %s\n' "$*" >&2; }

die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

# Install the Debian packages that are not installed yet; a machine that already has them
# (a re-run) touches neither the network nor dpkg.
apt_install() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "packages already installed: $*"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "installing ${missing[*]} needs root (apt-get)"
  command -v apt-get >/dev/null || die "no apt-get to install ${missing[*]}; install them by hand"
  # Packages must not start their services: dockerd needs flags of its own (docker-up.sh)
  # and the tests run a private PostgreSQL. Debian asks policy-rc.d; 101 means "do not".
  local policy=/usr/sbin/policy-rc.d own_policy='' rc=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
  fi
  log "apt-get install ${missing[*]}"
  {
    apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
  } || rc=$?
  if [ -n "$own_policy" ]; then rm -f "$policy"; fi
  [ "$rc" -eq 0 ] || die "apt-get install ${missing[*]} failed (exit $rc)"
}

image_present() { docker image inspect "$1" >/dev/null 2>&1; }

# Run the command given after IMAGE unless IMAGE exists, once per machine: of two callers
# at once, the second waits for the first (flock) and then finds the image built.
build_once() {
  local image=$1
  shift
  if image_present "$image"; then
    log "$image already built"
    return 0
  fi
  (
    flock 9
    if image_present "$image"; then
      log "$image built meanwhile"
    else
      "$@"
    fi
  ) 9>"${TMPDIR:-/tmp}/swarm-oauth-image-${image//[^A-Za-z0-9._-]/_}.lock"
}

# A tag for an image built from the files of DIR on $BASE_IMAGE: a digest of those inputs,
# so that a changed input gets a new image rather than a stale one.
inputs_digest() {
  {
    printf '%s\n' "$BASE_IMAGE"
    cat "$1"/*
  } | sha256sum | cut -c1-12
}

# Build IMAGE from Debian trixie's packages (PACKAGES, comma-separated) with mmdebstrap and
# docker import. Arguments up to `--` go to mmdebstrap, those after it to docker import.
# The root filesystem goes into a file first, not a pipe: a build that fails half-way
# must not leave a truncated image behind that build_once would take for a good one.
debian_image() {
  local image=$1 packages=$2 work rc=0
  shift 2
  local debootstrap=()
  while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
    debootstrap+=("$1")
    shift
  done
  [ "$#" -eq 0 ] || shift
  command -v mmdebstrap >/dev/null || apt_install mmdebstrap
  work=$(mktemp -d)
  mmdebstrap --quiet --variant=minbase --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' "${debootstrap[@]}" \
    trixie "$work/rootfs.tar" "deb http://deb.debian.org/debian trixie main" \
    && docker import "$@" "$work/rootfs.tar" "$image" >/dev/null || rc=$?
  rm -rf "$work"
  [ "$rc" -eq 0 ] || die "building $image from Debian's packages failed"
}
