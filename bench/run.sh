#!/usr/bin/env bash
# run.sh — Gatehouse side by side with HAProxy, nginx and Caddy, on the shared
# many-certificate TLS harness (shared/bench beside this repository).
#
#   bench/setup.sh                                   # once: packages + harness tools
#   NS="1000 10000" bench/run.sh                     # gatehouse haproxy nginx caddy
#   NS=100 HS_D=4 KA_D=4 PEERS="gatehouse haproxy" bench/run.sh   # smoke run
#   bench/run.sh --table [results.tsv]               # print the tables again
#
# Copies the harness to $BENCH_WORK/harness (the shared copy is read-only and
# the harness builds its tools into its own bin/), builds gatehouse once into
# $BENCH_WORK/gatehouse-bin, runs the harness with PEERS_DIR=bench/peers, then
# prints the harness's table, Gatehouse's certificate import times and the
# ratios Gatehouse / each other peer. Every other setting (NS, HS_D, KA_D,
# KEYTYPE, PIN, REPEAT, …) is the harness's: see its README.md.
#
# PPROF=1 builds gatehouse with net/http/pprof on GATEHOUSE_PPROF_ADDR
# (default 127.0.0.1:16060) for `go tool pprof` during a load phase.
#
# Results: $BENCH_WORK/results.tsv (an earlier one is moved to
# results-<time>.tsv unless KEEP_RESULTS=1), ratios.txt, ratios.md, import.tsv.
set -uo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/env.sh"

GH_BIN_DIR=$BENCH_WORK/gatehouse-bin
RESULTS=$BENCH_WORK/results.tsv

# import_table: Gatehouse's offline import per run (not part of start-up).
import_table() {
	local f out=$BENCH_WORK/import.tsv
	printf 'N\trun\tbundles\timport s\tbundles/s\tdata MB\n' >"$out"
	for f in "$BENCH_WORK"/runs/*-gatehouse-*/import.txt; do
		[ -f "$f" ] || continue
		local d
		d=$(basename "$(dirname "$f")")
		awk -F'\t' -v n="${d%%-*}" -v run="${d##*-}" '{ v[$1] = $2 }
			END { printf "%s\t%s\t%s\t%s\t%s\t%s\n", n, run, v["import_bundles"], v["import_s"], v["import_per_s"], v["data_mb"] }' "$f"
	done | sort -n >>"$out"
	echo
	echo "# gatehouse certificate import (offline, before start; not counted in start-up)"
	column -t -s $'\t' "$out"
}

# ratio_tables FILE: the ratios, printed and kept as text and Markdown.
ratio_tables() {
	local f=$1
	[ -x "$GH_BIN_DIR/ratios" ] || build_ratios || return 1
	echo
	"$GH_BIN_DIR/ratios" "$f" | tee "$BENCH_WORK/ratios.txt"
	"$GH_BIN_DIR/ratios" -md "$f" >"$BENCH_WORK/ratios.md"
}

build_ratios() { (cd "$REPO" && ${GO:-go} build -o "$GH_BIN_DIR/ratios" ./bench/ratios); }

# build_gatehouse: with PPROF=1 the binary also serves net/http/pprof on
# $GATEHOUSE_PPROF_ADDR (bench/pprof/pprof.go added through -overlay).
build_gatehouse() {
	local rev extra=()
	rev=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo dev)
	mkdir -p "$GH_BIN_DIR"
	if [ "${PPROF:-0}" = 1 ]; then
		printf '{"Replace": {"%s": "%s"}}\n' "$REPO/cmd/gatehouse/zz_benchpprof.go" "$REPO/bench/pprof/pprof.go" >"$GH_BIN_DIR/pprof-overlay.json"
		extra=(-tags benchpprof -overlay "$GH_BIN_DIR/pprof-overlay.json")
		rev=$rev+pprof
		export GATEHOUSE_PPROF_ADDR=${GATEHOUSE_PPROF_ADDR:-127.0.0.1:16060}
		say "pprof: go tool pprof -seconds 5 http://$GATEHOUSE_PPROF_ADDR/debug/pprof/profile (during a load phase)"
	fi
	say "building gatehouse $rev into $GH_BIN_DIR"
	(cd "$REPO" && ${GO:-go} build "${extra[@]}" -ldflags "-X main.version=$rev" -o "$GH_BIN_DIR/gatehouse" ./cmd/gatehouse)
}

if [ "${1:-}" = "--table" ]; then
	f=${2:-$RESULTS}
	copy_harness || exit 1
	bash "$HARNESS/run.sh" --table "$f"
	[ "$f" = "$RESULTS" ] && import_table
	ratio_tables "$f"
	exit
fi

command -v haproxy >/dev/null || say "haproxy not found: run bench/setup.sh first"
copy_harness || exit 1
if [ -n "${GATEHOUSE_BIN:-}" ]; then
	[ -x "$GATEHOUSE_BIN" ] || { say "GATEHOUSE_BIN=$GATEHOUSE_BIN: not an executable file"; exit 1; }
	say "using $GATEHOUSE_BIN ($("$GATEHOUSE_BIN" --version 2>/dev/null))"
else
	build_gatehouse || { say "go build ./cmd/gatehouse failed"; exit 1; }
	export GATEHOUSE_BIN=$GH_BIN_DIR/gatehouse
fi
build_ratios || { say "go build ./bench/ratios failed"; exit 1; }

if [ -f "$RESULTS" ] && [ "${KEEP_RESULTS:-0}" != 1 ]; then
	stamp=$(date -u +%Y%m%dT%H%M%SZ)
	mv "$RESULTS" "$BENCH_WORK/results-$stamp.tsv"
	[ -f "$BENCH_WORK/environment.txt" ] && mv "$BENCH_WORK/environment.txt" "$BENCH_WORK/environment-$stamp.txt"
	rm -rf "$BENCH_WORK"/runs/*-gatehouse-*
	say "earlier results moved to $BENCH_WORK/results-$stamp.tsv"
fi

PEERS=${PEERS:-"gatehouse haproxy nginx caddy"} PEERS_DIR=$REPO/bench/peers BENCH_WORK=$BENCH_WORK \
	bash "$HARNESS/run.sh" "$@"
rc=$?
if [ -f "$RESULTS" ]; then
	import_table
	ratio_tables "$RESULTS"
fi
exit $rc
