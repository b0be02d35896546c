#!/usr/bin/env bash
# Make sure a Docker Engine answers on the default socket and is a single-node swarm manager
# (docs/testing.md). Starts dockerd detached only when none is running; safe to re-run.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
command -v docker >/dev/null || die "docker CLI not found; run .ci/packages.sh first"

wait_for_engine() {
  local deadline=$((SECONDS + 60))
  until docker info >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      [ -f "$DOCKERD_LOG" ] && tail -n 30 "$DOCKERD_LOG" >&2
      die "the Docker Engine did not answer within 60 s (log: $DOCKERD_LOG)"
    fi
    sleep 0.5
  done
}

if docker info >/dev/null 2>&1; then
  log "Docker Engine already running"
else
  if pgrep -x dockerd >/dev/null; then
    log "dockerd is starting; waiting for it"
  else
    command -v dockerd >/dev/null || die "dockerd not found; run .ci/packages.sh first"
    [ "$(id -u)" -eq 0 ] || die "starting dockerd needs root"
    # This kernel has no NAT for containers: without iptables, dockerd starts cleanly.
    # setsid -f and the redirections detach it, so it outlives this script and holds no
    # pipe of the caller open.
    log "starting dockerd (log: $DOCKERD_LOG)"
    setsid -f dockerd --iptables=false --ip6tables=false >>"$DOCKERD_LOG" 2>&1 </dev/null
  fi
  wait_for_engine
fi

state=$(docker info --format '{{.Swarm.LocalNodeState}}')
case "$state" in
  active) log "swarm already active" ;;
  inactive)
    log "docker swarm init --advertise-addr 127.0.0.1"
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null
    ;;
  *) die "swarm state is '$state'; repair it by hand (docker swarm leave --force) and re-run" ;;
esac
[ "$(docker info --format '{{.Swarm.ControlAvailable}}')" = true ] \
  || die "this node is in a swarm but not a manager; the tests need a manager"
log "Docker $(docker version --format '{{.Server.Version}}'), swarm manager ready"
