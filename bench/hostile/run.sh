#!/usr/bin/env bash
# run.sh — hostile clients against one Gatehouse node on loopback (see
# bench/README.md, "Hostile clients"): six attacks one after the other,
# each D seconds at RATE attack connections a second beside 20 normal
# GETs a second; prints per attack the normal requests' success rate,
# member ejections and status component state changes (goals: 100 %, 0, 0).
#
#   bench/hostile/run.sh                    # D=10s RATE=10
#   GATEHOUSE=/path/to/older/gatehouse TIMEOUTS=false bench/hostile/run.sh
#       # the same probe against another build (TIMEOUTS=false for a build
#       # without listeners.https.body_read_timeout/write_idle_timeout)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=${WORK:-/tmp/hostile}
BIN=$(mktemp -d)
trap 'rm -rf "$BIN"' EXIT
(cd "$REPO" && go build -o "$BIN/hostile" ./bench/hostile)
if [ -z "${GATEHOUSE:-}" ]; then
	(cd "$REPO" && go build -o "$BIN/gatehouse" ./cmd/gatehouse)
	GATEHOUSE=$BIN/gatehouse
fi
"$BIN/hostile" -gatehouse "$GATEHOUSE" -work "$WORK" -d "${D:-10s}" -rate "${RATE:-10}" -timeouts="${TIMEOUTS:-true}" ${ONLY:+-only "$ONLY"}
