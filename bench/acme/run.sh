#!/usr/bin/env bash
# run.sh — the ACME renewal schedule at scale on a simulated clock, no CA
# (see bench/README.md, "ACME renewal at scale"). Builds bench/acme and runs
# every lifetime and scenario at N hostnames over DAYS days, pinned to CPU.
#
#   bench/acme/run.sh                          # N=1,000,000, 60 days, 90/45/6-day lifetimes
#   N=100000 LIFETIMES=6 bench/acme/run.sh     # a quicker look
#
# Env: N DAYS LIFETIMES SCENARIOS PACE (cap per minute as a multiple of the
# long-run mean; 0 = none) CPU (taskset list) OUT (binary directory).
# About 12 minutes of CPU at 1M (the 6-day lifetime is 20 million renewals
# per scenario).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-/tmp/acmebench}
mkdir -p "$OUT"
(cd "$REPO" && go build -o "$OUT/acme" ./bench/acme)
exec taskset -c "${CPU:-0}" "$OUT/acme" -n "${N:-1000000}" -days "${DAYS:-60}" \
	-lifetimes "${LIFETIMES:-90,45,6}" -scenarios "${SCENARIOS:-cold,spread,restart}" -pace "${PACE:-2}"
