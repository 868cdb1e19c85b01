#!/usr/bin/env bash
# scripts/test.sh — the whole test run: installs what the tests need (as root,
# from Debian's packages), checks formatting and vet, runs every test with the
# race detector, checks the Prometheus alerting rules with promtool, then a
# short run of each fuzz target.
#
#   ./scripts/test.sh                 everything
#   FUZZTIME=0 ./scripts/test.sh      skip the fuzz runs
#   FUZZTIME=50000x ./scripts/test.sh longer fuzz runs
set -euo pipefail
cd "$(dirname "$0")/.."

# An execution count, not a duration: `go test -fuzz` with a duration can
# fail spuriously on a busy machine ("context deadline exceeded" with no
# crasher); a count does not. 10000 executions took 1.5 to 5 s per target on a
# two-core machine at load average 13.
FUZZTIME=${FUZZTIME:-10000x}

# Tools the tests drive for real: Chromium (status pages in a real browser),
# curl and openssl s_client (real TLS clients), h2load (HTTP/2 client).
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
# promtool (the Prometheus rules checker) comes with Debian's prometheus
# package; look for it beside the server too, where other builds put it.
promtool=$(command -v promtool 2>/dev/null || true)
[ -n "$promtool" ] || [ ! -x /usr/share/prometheus/promtool ] || promtool=/usr/share/prometheus/promtool
[ -n "$promtool" ] || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -eq 0 ]; then
		echo "installing: ${need[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${need[@]}" ca-certificates >/dev/null
		# The package starts a Prometheus server where services start; the
		# tests need only its promtool.
		if [[ " ${need[*]} " == *" prometheus "* ]]; then
			promtool=$(command -v promtool 2>/dev/null || dpkg -L prometheus | grep -m1 '/promtool$' || true)
			if [ -z "$promtool" ]; then
				echo "the prometheus package installed no promtool" >&2
				exit 1
			fi
		fi
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

echo "== promtool (examples/prometheus)"
(cd examples/prometheus && "$promtool" check rules gatehouse-rules.yml && "$promtool" test rules gatehouse-rules.test.yml)

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
