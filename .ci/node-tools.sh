#!/usr/bin/env bash
# Install the Node.js programs the tests run against, once per machine, pinned: Stoplight
# Prism (Hydra's published API contract, served as a validating mock) and panva's
# oidc-provider (a certified OpenID provider with dynamic client registration). Prints the
# directory they are in. Safe to re-run and to run twice at once; the tests call it when
# the directory is missing. Needs node and npm (Debian: nodejs, npm) and the npm registry.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

# Prism 5.14 is the last release that runs on Node 20; oidc-provider 8 likewise.
PRISM=@stoplight/prism-cli@5.14.2
OIDC_PROVIDER=oidc-provider@8.8.1
NODE_TOOLS=${NODE_TOOLS:-/var/cache/swarm-oauth/node-tools}
stamp="$NODE_TOOLS/.installed-$(printf '%s %s' "$PRISM" "$OIDC_PROVIDER" | sha256sum | cut -c1-12)"

command -v npm >/dev/null || die "npm is missing (Debian: apt-get install nodejs npm)"
if [ ! -e "$stamp" ]; then
  mkdir -p "$NODE_TOOLS"
  exec 9>"$NODE_TOOLS/.lock"
  flock 9
  if [ ! -e "$stamp" ]; then
    log "npm install $PRISM $OIDC_PROVIDER into $NODE_TOOLS (about a minute)"
    [ -e "$NODE_TOOLS/package.json" ] || printf '{"private": true}\n' >"$NODE_TOOLS/package.json"
    npm install --prefix "$NODE_TOOLS" --no-audit --no-fund --silent "$PRISM" "$OIDC_PROVIDER" >&2
    touch "$stamp"
  fi
fi
echo "$NODE_TOOLS"
