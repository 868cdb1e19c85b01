#!/usr/bin/env bash
# run.sh — Gatehouse with many installed certificates (see bench/README.md,
# "Certificate scale"). Builds gatehouse, certscale and the shared harness's
# hsload and backend, then runs every phase at N installed names plus W
# wildcards, on 127.0.0.1 only, the server pinned to SERVER_CPU and the load
# to LOAD_CPU.
#
#   bench/certscale/run.sh                 # N=1,000,000 + 10,000 wildcards
#   N=100000 bench/certscale/run.sh        # or N=1000
#   PHASES=startup,memory bench/certscale/run.sh
#
# Env: N W WORK (default /tmp/certscale; needs ~4.5 GB at 1M) PHASES D (load
# duration) C (load concurrency) CHURN SERVER_CPU LOAD_CPU SHARED (the shared
# bench dir). Certificates and imported data are reused between runs of the
# same N; the offline import is timed only when PHASES includes "import"
# or the data does not exist yet.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
N=${N:-1000000}
W=${W:-10000}
WORK=${WORK:-/tmp/certscale}
PHASES=${PHASES:-all}
SHARED=${SHARED:-$REPO/../shared/bench}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BIN=$WORK/bin
mkdir -p "$BIN"
df -h "$WORK" | tail -1 >&2
(cd "$REPO" && go build -o "$BIN/gatehouse" ./cmd/gatehouse && go build -o "$BIN/certscale" ./bench/certscale)
(cd "$SHARED" && go build -o "$BIN/hsload" ./hsload && go build -o "$BIN/backend" ./backend)
# Generation uses every CPU; the run itself is pinned to the load CPUs.
"$BIN/certscale" gen -work "$WORK/certs-$N" -n "$N" -wild "$W"
exec taskset -c "$LOAD_CPU" "$BIN/certscale" run -work "$WORK" -n "$N" -wild "$W" -phases "$PHASES" \
	-gatehouse "$BIN/gatehouse" -hsload "$BIN/hsload" -backend "$BIN/backend" \
	-server-cpu "$SERVER_CPU" -load-cpu "$LOAD_CPU" -d "${D:-15s}" -c "${C:-16}" -churn "${CHURN:-30s}"
