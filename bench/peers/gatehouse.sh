# Peer adapter: Gatehouse (this repository), for the shared harness
# (PEERS_DIR=<repo>/bench/peers). Contract: see the harness's peers/_template.sh.
# Inputs (env): PEER_CONF CERT_DIR HOSTS_FILE N LISTEN BACKEND THREADS BENCH_DIR.
#
# Certificates live in Gatehouse's store, not in files, so peer_config imports
# them offline into a data dir under $PEER_CONF before the server starts: that
# is Gatehouse's analogue of writing the certificate files the other peers
# read, and does not count as start-up. Its time and rate are written to
# $PEER_CONF/import.txt.
#
# GATEHOUSE_IMPORT_FROM picks the files imported:
#   pairs (default)  $CERT_DIR/crt/<host>.crt + $CERT_DIR/key/<host>.key,
#                    symlinked side by side into $PEER_CONF/import/
#   pem              $CERT_DIR/pem/<host>.pem (chain + key in one file)
# Both hold the same chain and key. "pairs" is the default because the CLI's
# import refuses combined files at the time of writing (the empty key PEM of a
# combined file reaches certs as a non-nil empty slice: "no PRIVATE KEY block
# found"); switch the default once that is fixed.
#
# Binary: $GATEHOUSE_BIN if set (bench/run.sh builds one per run and sets it);
# otherwise $BENCH_DIR/../gatehouse-bin/gatehouse, built from this repository
# when missing. The admin listener (required by Gatehouse) goes on
# GATEHOUSE_ADMIN_PORT, default the TLS port + 1.

GH_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

gh_bin() { echo "${GATEHOUSE_BIN:-$BENCH_DIR/../gatehouse-bin/gatehouse}"; }

# gh_build: build the binary unless GATEHOUSE_BIN names one or it exists.
gh_build() {
	local bin
	bin=$(gh_bin)
	if [ -n "${GATEHOUSE_BIN:-}" ]; then
		[ -x "$bin" ] || { echo "GATEHOUSE_BIN=$bin: not an executable file" >&2; return 1; }
		return 0
	fi
	[ -x "$bin" ] && return 0
	mkdir -p "$(dirname "$bin")"
	local rev
	rev=$(git -C "$GH_REPO" describe --always --dirty 2>/dev/null || echo dev)
	(cd "$GH_REPO" && ${GO:-go} build -ldflags "-X main.version=$rev" -o "$bin" ./cmd/gatehouse)
}

peer_version() {
	gh_build >&2 || { echo "gatehouse ?"; return; }
	echo "gatehouse $("$(gh_bin)" --version 2>/dev/null | awk '{print $NF}')"
}

peer_config() {
	gh_build || return 1
	local bin data admin_port
	bin=$(gh_bin)
	data=$PEER_CONF/data
	admin_port=${GATEHOUSE_ADMIN_PORT:-$((${LISTEN##*:} + 1))}
	cat >"$PEER_CONF/gatehouse.yaml" <<CFG
data_dir: $data
listeners:
  # the load generator is one address: exempt it from the per-client limits
  https: {address: "$LISTEN", per_client: {allow: ["127.0.0.0/8", "::1"]}}
  admin: {address: "127.0.0.1:$admin_port"}
tls: {unknown_sni: reject}
log: {level: warn}
pools:
  - name: origin
    members: [{address: "$BACKEND"}]
routes:
  - {host: "*", pool: origin}
CFG
	local src files t0 t1
	case ${GATEHOUSE_IMPORT_FROM:-pairs} in
	pem)
		src=$CERT_DIR/pem
		files=$(find "$src" -maxdepth 1 -name '*.pem' | wc -l)
		;;
	pairs)
		src=$PEER_CONF/import
		mkdir -p "$src"
		cp -rs "$CERT_DIR/crt/." "$src/" && cp -rs "$CERT_DIR/key/." "$src/" || return 1
		files=$(find "$src" -maxdepth 1 -name '*.crt' | wc -l)
		;;
	*)
		echo "GATEHOUSE_IMPORT_FROM=$GATEHOUSE_IMPORT_FROM: want pem or pairs" >&2
		return 1
		;;
	esac
	t0=$(date +%s.%N)
	"$bin" cert import --offline --data "$data" --batch 500 "$src" \
		>"$PEER_CONF/import.out" 2>"$PEER_CONF/import.err" || {
		echo "gatehouse cert import failed: $(tail -3 "$PEER_CONF/import.err" | tr '\n' ' ')" >&2
		return 1
	}
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" -v n="$files" -v from="${GATEHOUSE_IMPORT_FROM:-pairs}" -v sz="$(du -sm "$data" | cut -f1)" -v sum="$(tail -1 "$PEER_CONF/import.out")" 'BEGIN {
		s = b - a
		printf "import_from\t%s\nimport_bundles\t%d\nimport_s\t%.2f\nimport_per_s\t%.0f\ndata_mb\t%s\nsummary\t%s\n", from, n, s, (s > 0 ? n / s : 0), sz, sum
	}' >"$PEER_CONF/import.txt"
	cat "$PEER_CONF/import.txt"
}

# GOMAXPROCS = the cores the server is pinned to; SIGTERM stops it gracefully.
peer_exec() { GOMAXPROCS=$THREADS exec "$(gh_bin)" serve --config "$PEER_CONF/gatehouse.yaml"; }
