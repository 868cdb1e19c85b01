#!/usr/bin/env bash
# setup.sh — install the peers and load tools for the side-by-side benchmark.
#
# Copies the shared harness to $BENCH_WORK/harness (the shared copy may be
# read-only, and its setup.sh builds its Go tools into its own bin/) and runs
# the copy's setup.sh there: apt-get installs haproxy, nginx, caddy, wrk,
# nghttp2-client (h2load), jq, … and builds the harness's Go tools. Needs root
# (or sudo). SKIP_APT=1 only builds. Safe to run again.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"

copy_harness
say "running $HARNESS/setup.sh"
bash "$HARNESS/setup.sh"
