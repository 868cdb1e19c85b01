#!/usr/bin/env bash
# run.sh — requests per second of the status portal (20 components, 200
# incidents) for its JSON, HTML and feed endpoints, with wrk over keep-alive
# on loopback. The server runs alone on SERVER_CPU (GOMAXPROCS=1), wrk on
# LOAD_CPU; the server's CPU seconds per 1,000 requests come from /proc.
#
#   bench/statusload/run.sh            # D=8 seconds per path, C=32 connections
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
D=${D:-8}
C=${C:-32}
ADDR=${ADDR:-127.0.0.1:28180}
BIN=$(mktemp -d)
trap 'kill $PID 2>/dev/null; rm -rf "$BIN"' EXIT
command -v wrk >/dev/null || { echo "wrk is not installed (bench/setup.sh installs it)" >&2; exit 1; }
(cd "$REPO" && go build -o "$BIN/statusload" ./bench/statusload)
GOMAXPROCS=1 taskset -c "$SERVER_CPU" "$BIN/statusload" -addr "$ADDR" >"$BIN/out" 2>&1 &
PID=$!
for _ in $(seq 100); do grep -q ready "$BIN/out" 2>/dev/null && break; sleep 0.1; done
grep ready "$BIN/out" >/dev/null || { cat "$BIN/out"; exit 1; }
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
hz=$(getconf CLK_TCK)
printf '%-34s %10s %12s %10s\n' path "req/s" "cpu s/1k" "p99"
for path in /api/v2/summary.json /api/v2/components.json /api/v2/incidents.json /index.html /history.html /history.atom /history.rss; do
	c0=$(cpu)
	out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$C" -d"${D}s" --latency "http://$ADDR$path")
	c1=$(cpu)
	rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
	total=$(echo "$out" | awk '/requests in/ {print $1}')
	p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
	non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
	cpk=$(awk -v a="$c0" -v b="$c1" -v n="$total" -v hz="$hz" 'BEGIN { if (n > 0) printf "%.4f", (b - a) / hz / n * 1000; else print "-" }')
	printf '%-34s %10s %12s %10s %s\n' "$path" "$rps" "$cpk" "$p99" "${non2xx:+non-2xx: $non2xx}"
done
