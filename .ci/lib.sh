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
