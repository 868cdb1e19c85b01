#!/usr/bin/env bash
# run.sh — a Gatehouse fleet on this machine (see bench/README.md, "Fleet"):
# a three-member etcd embedded in the bench process, three gatehouse
# processes sharing it, N certificates. Reports propagation latency of
# additions, start-to-serving of a fresh node, and the handshake rate of one
# node on etcd against one on the embedded bolt store at the same N.
#
#   bench/fleet/run.sh                  # N=100000
#   N=10000 ADDS=100 bench/fleet/run.sh
#   FROM_BOLT=/tmp/cs/data-1000000 WORK=/tmp/fleet1m bench/fleet/run.sh
#       # start-up mode: etcd filled from a bolt data dir (1M certificates),
#       # cold and warm node starts timed; REUSE=1 keeps a filled etcd
#
# Env: N ADDS ROUTES (dynamic routes stored before the nodes start) WORK (default /tmp/fleet, wiped first) D WARM C SERVER_CPU
# LOAD_CPU (after the import, etcd and the load client run on LOAD_CPU and
# the measured node on SERVER_CPU).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=${WORK:-/tmp/fleet}
[ "${REUSE:-0}" = 1 ] || rm -rf "$WORK"
mkdir -p "$WORK/bin"
(cd "$REPO" && go build -o "$WORK/bin/gatehouse" ./cmd/gatehouse && go build -o "$WORK/bin/fleet" ./bench/fleet)
if [ -n "${FROM_BOLT:-}" ]; then
	reuse=()
	[ "${REUSE:-0}" = 1 ] && reuse=(-reuse)
	exec "$WORK/bin/fleet" -work "$WORK" -gatehouse "$WORK/bin/gatehouse" -from-bolt "$FROM_BOLT" "${reuse[@]}" \
		-importers "${IMPORTERS:-6}" -repeat "${REPEAT:-2}"
fi
exec "$WORK/bin/fleet" -work "$WORK" -gatehouse "$WORK/bin/gatehouse" -n "${N:-100000}" -adds "${ADDS:-200}" -routes "${ROUTES:-0}" \
	-d "${D:-10s}" -warm "${WARM:-10s}" -c "${C:-16}" -server-cpu "${SERVER_CPU:-0}" -load-cpu "${LOAD_CPU:-1}"
