#!/usr/bin/env bash
# scripts/test.sh — the whole test run: installs what the tests need (as root,
# from Debian's packages), checks formatting and vet, runs every test with the
# race detector, then a short run of each fuzz target.
#
#   ./scripts/test.sh                 everything
#   FUZZTIME=0 ./scripts/test.sh      skip the fuzz runs
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-10s}

# Tools the tests drive for real: Chromium (status pages in a real browser),
# curl and openssl s_client (real TLS clients), h2load (HTTP/2 client).
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -eq 0 ]; then
		echo "installing: ${need[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${need[@]}" ca-certificates >/dev/null
	else
		echo "missing ${need[*]}: install them (sudo apt-get install ${need[*]}) and run again" >&2
		exit 1
	fi
fi

echo "== gofmt"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then
	echo "gofmt would change:" $bad >&2
	exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 10m ./...

if [ "$FUZZTIME" != "0" ]; then
	echo "== fuzz ($FUZZTIME each)"
	grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
		dir=$(dirname "$f")
		for t in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | cut -d' ' -f2); do
			echo "-- $dir $t"
			go test -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" "$dir"
		done
	done
fi
