#!/usr/bin/env bash
# Build dockerflow's swarm-listener from the source archive beside this script, with
# Debian's Go toolchain and Go libraries: no Go module proxy and no registry is needed.
#
#   deploy/swarm-listener/build.sh OUT_BINARY
#
# The archive is github.com/docker-flow/docker-flow-swarm-listener at its last commit,
# e7128a5 (May 2019; the project is unmaintained), MIT licence (LICENSE.md inside). One
# change is made to it: `prometheus.Handler()`, which client_golang 1.x (what Debian
# ships) no longer has, becomes `promhttp.Handler()`; it only serves /metrics, and the
# notification code is untouched. The binary is static (CGO_ENABLED=0, as upstream
# builds it), so it runs on any base image.
#
# Needs the Debian packages golang-go, golang-github-docker-docker-dev and
# golang-github-prometheus-client-golang-dev (.ci/packages.sh installs them). Built and
# tested with those of Debian 12 (Go 1.19, Docker client 20.10).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:?usage: build.sh OUT_BINARY}
archive="$here/docker-flow-swarm-listener-e7128a5.tar.gz"
archive_sha256=25bfc725bc638739aed41457675a4c30a742d1066839eef0884e21dd6cdbe6f4
gocode=/usr/share/gocode/src

die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

missing=()
command -v go >/dev/null || missing+=(golang-go)
[ -d "$gocode/github.com/docker/docker/client" ] || missing+=(golang-github-docker-docker-dev)
[ -d "$gocode/github.com/prometheus/client_golang/prometheus/promhttp" ] \
  || missing+=(golang-github-prometheus-client-golang-dev)
[ "${#missing[@]}" -eq 0 ] || die "missing Debian packages; apt-get install ${missing[*]}"
echo "$archive_sha256  $archive" | sha256sum --check --status \
  || die "$archive does not match its recorded sha256"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/github.com/docker-flow"
tar -xzf "$archive" -C "$work/src/github.com/docker-flow"
cd "$work/src/github.com/docker-flow/docker-flow-swarm-listener"
sed -i -e 's/prometheus\.Handler()/promhttp.Handler()/' \
  -e 's#"github.com/prometheus/client_golang/prometheus"#"github.com/prometheus/client_golang/prometheus/promhttp"#' \
  serve.go
grep -q 'promhttp.Handler()' serve.go || die "serve.go changed; the /metrics patch no longer applies"
# GOPATH mode: the archive's go.mod pins versions from 2018 that only a module proxy has;
# Debian's libraries under /usr/share/gocode are used instead.
mkdir -p "$(dirname "$out")"
CGO_ENABLED=0 GO111MODULE=off GOFLAGS=-trimpath GOPATH="$work:/usr/share/gocode" \
  GOCACHE="$work/cache" go build -ldflags '-s -w' -o "$out" .
echo "built $out" >&2
