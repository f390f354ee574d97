#!/usr/bin/env bash
# The project's one test command (.ci/run calls it).
#
#   scripts/test.sh [go test flags...]
#
# 1. Installs the external DTLS peers the interop tests drive, if missing
#    (Debian packages openssl, gnutls-bin, libcoap3-bin, redis-server, and
#    tshark for the capture tests): one
#    `apt-get update`, then `apt-get install -y --no-install-recommends`, with
#    sudo only when not root. Does nothing when every binary is present.
# 2. go mod download
# 3. gofmt -l (fails on any unformatted file outside testdata/) and go vet
# 4. go test -count=1 -timeout 30m "$@" $DTLSRESUME_TEST_PKGS
#
# Environment:
#   DTLSRESUME_TEST_PKGS  packages for go vet and go test (default ./...),
#                         e.g. DTLSRESUME_TEST_PKGS=./internal/... ; split on
#                         whitespace, so several patterns may be given.
#   DTLSRESUME_SKIP_INSTALL=1  skip step 1 (the peer tests then fail on a
#                         missing peer unless DTLSRESUME_ALLOW_MISSING_PEERS=1).
#   DTLSRESUME_ALLOW_MISSING_PEERS=1  read by the tests (internal/peers):
#                         skip, rather than fail, a test whose peer is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() {
	printf '\n==== %s ====\n' "$*"
}

# binary:package pairs the tests need.
PEERS=(
	openssl:openssl
	gnutls-cli:gnutls-bin
	gnutls-serv:gnutls-bin
	coap-client-openssl:libcoap3-bin
	coap-server-openssl:libcoap3-bin
	redis-server:redis-server
	tshark:tshark
)

install_peers() {
	section "peers: checking ${#PEERS[@]} binaries"
	local missing=() pair bin pkg
	for pair in "${PEERS[@]}"; do
		bin=${pair%%:*}
		pkg=${pair#*:}
		if command -v "$bin" >/dev/null 2>&1; then
			echo "found   $bin: $(command -v "$bin")"
		else
			echo "missing $bin (package $pkg)"
			if [[ " ${missing[*]-} " != *" $pkg "* ]]; then
				missing+=("$pkg")
			fi
		fi
	done
	if ((${#missing[@]} == 0)); then
		echo "all peers present"
		return 0
	fi

	local sudo=()
	if ((EUID != 0)); then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "error: not root and no sudo: cannot install ${missing[*]}" >&2
			return 1
		fi
		sudo=(sudo)
	fi
	section "peers: installing ${missing[*]}"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"

	for pair in "${PEERS[@]}"; do
		bin=${pair%%:*}
		if ! command -v "$bin" >/dev/null 2>&1; then
			echo "error: $bin still missing after installing ${missing[*]}" >&2
			return 1
		fi
	done
}

if [[ ${DTLSRESUME_SKIP_INSTALL:-} == 1 ]]; then
	section "peers: install skipped (DTLSRESUME_SKIP_INSTALL=1)"
else
	install_peers
fi

section "versions"
go version
command -v openssl >/dev/null && openssl version || true
command -v gnutls-cli >/dev/null && gnutls-cli --version | head -n 1 || true
command -v dpkg-query >/dev/null && dpkg-query -W -f='${Package} ${Version}\n' libcoap3-bin redis-server tshark 2>/dev/null || true

read -r -a PKGS <<<"${DTLSRESUME_TEST_PKGS:-./...}"
if ((${#PKGS[@]} == 0)); then
	PKGS=(./...)
fi

section "go mod download"
go mod download

section "gofmt -l"
# Every .go file outside testdata/ directories (and vendor/, .git/).
unformatted=$(find . \( -name testdata -o -name vendor -o -name '.*' ! -name . \) -prune -o -name '*.go' -type f -print0 |
	xargs -0 -r gofmt -l)
if [[ -n $unformatted ]]; then
	echo "gofmt: these files need formatting (run gofmt -w):" >&2
	echo "$unformatted" >&2
	exit 1
fi
echo "ok"

section "go vet ${PKGS[*]}"
go vet "${PKGS[@]}"
echo "ok"

section "go test -count=1 -timeout 30m $* ${PKGS[*]}"
go test -count=1 -timeout 30m "$@" "${PKGS[@]}"
