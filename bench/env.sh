# env.sh — sourced by bench/run.sh and bench/setup.sh: where the shared
# harness, the work directory and the Gatehouse source are.
#
#   REPO          the Gatehouse repository (this file's parent's parent)
#   SHARED_BENCH  the read-only harness (default: shared/bench beside the repo)
#   BENCH_WORK    writable work dir: harness copy, binaries, certificates, results
#   HARNESS       the writable copy of the harness ($BENCH_WORK/harness)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED_BENCH=${SHARED_BENCH:-$REPO/../shared/bench}
BENCH_WORK=${BENCH_WORK:-$REPO/bench/work}
mkdir -p "$BENCH_WORK"
BENCH_WORK=$(cd "$BENCH_WORK" && pwd)
HARNESS=$BENCH_WORK/harness
export SHARED_BENCH BENCH_WORK

say() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# copy_harness: refresh $HARNESS from $SHARED_BENCH (which may be read-only;
# the harness builds its Go tools into its own bin/, so it runs from a copy).
# The copy's bin/ is kept: the harness rebuilds it on every run anyway.
copy_harness() {
	if [ ! -f "$SHARED_BENCH/run.sh" ]; then
		say "no harness at $SHARED_BENCH (set SHARED_BENCH to the shared bench/ directory)"
		return 1
	fi
	mkdir -p "$HARNESS"
	find "$HARNESS" -mindepth 1 -maxdepth 1 ! -name bin -exec rm -rf {} +
	cp -R "$SHARED_BENCH/." "$HARNESS/"
	chmod -R u+w "$HARNESS"
}
