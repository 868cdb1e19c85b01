#!/usr/bin/env bash
# run.sh — the response cache side by side with nginx's proxy_cache:
# keep-alive HTTPS GETs of a 10 KB response ("Cache-Control: max-age=60")
# from a small origin over loopback, with wrk, for
#   proxy        caching off (plain proxying), for reference
#   cached       caching on, warmed: every request a hit
#   down-fresh   origin stopped, the stored entry still fresh
#   down-stale   origin stopped, the stored entry (max-age=1) stale:
#                served in place of the error (stale-if-error /
#                proxy_cache_use_stale)
# The server runs alone on SERVER_CPU (Gatehouse GOMAXPROCS=1, nginx one
# worker), wrk and the origin on LOAD_CPU. CPU seconds per 1,000 requests
# are the server's utime+stime from /proc, summed over its process tree.
#
#   bench/cache/run.sh          # D=8 s per run, DOWN_D=10 s, C=50, REPEAT=1
#   REPEAT=2 bench/cache/run.sh # two rounds; the table shows each run
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
D=${D:-8}
DOWN_D=${DOWN_D:-10}
C=${C:-50}
REPEAT=${REPEAT:-1}
PEERS=${PEERS:-"gatehouse nginx"}
PORT=${PORT:-28243}
ADMIN_PORT=$((PORT + 1))
ORIGIN=${ORIGIN:-127.0.0.1:28290}
NGINX=${NGINX:-/usr/sbin/nginx}
HOST=localhost # resolves to 127.0.0.1 via /etc/hosts, so wrk sends it as SNI
URL=https://$HOST:$PORT

T=$(mktemp -d)
SRV_PID=
ORIGIN_PID=
cleanup() {
	[ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null
	[ -n "$ORIGIN_PID" ] && kill "$ORIGIN_PID" 2>/dev/null && wait "$ORIGIN_PID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
for b in wrk openssl curl taskset "$NGINX"; do
	command -v "$b" >/dev/null || { echo "$b is not installed" >&2; exit 1; }
done
hz=$(getconf CLK_TCK)

# --- binaries and certificates -------------------------------------------
mkdir -p "$T/bin" "$T/certs/import"
(cd "$REPO" && go build -o "$T/bin/gatehouse" ./cmd/gatehouse && go build -o "$T/bin/origin" ./bench/cache/origin)
(
	cd "$T/certs"
	openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
	openssl req -x509 -new -key ca.key -subj "/CN=bench cache throwaway CA" -days 2 -out ca.crt 2>/dev/null
	openssl ecparam -name prime256v1 -genkey -noout -out leaf.key 2>/dev/null
	openssl req -new -key leaf.key -subj "/CN=$HOST" -out leaf.csr 2>/dev/null
	printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' "$HOST" >ext
	openssl x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out leaf.crt 2>/dev/null
	cat leaf.crt ca.crt >chain.crt
	openssl pkcs8 -topk8 -nocrypt -in leaf.key -out import/$HOST.key
	cp chain.crt import/$HOST.crt
)
"$T/bin/gatehouse" cert import --offline --data "$T/gh-data" "$T/certs/import" >"$T/import.out" 2>&1 ||
	{ cat "$T/import.out" >&2; exit 1; }

# --- servers ---------------------------------------------------------------
# gh_conf MODE (cache|proxy) writes the Gatehouse config.
gh_conf() {
	local cache=
	[ "$1" = cache ] && cache=", cache: {enabled: true, default_ttl: 5m, max_stale: 24h}"
	cat >"$T/gatehouse.yaml" <<CFG
data_dir: $T/gh-data
listeners:
  # the load generator is one address: exempt it from the per-client limits
  https: {address: "127.0.0.1:$PORT", per_client: {allow: ["127.0.0.0/8"]}}
  admin: {address: "127.0.0.1:$ADMIN_PORT"}
tls: {unknown_sni: reject}
log: {level: warn}
response_cache: {max_bytes: 64MiB, max_object_bytes: 1MiB}
pools:
  - name: origin
    members: [{address: "$ORIGIN"}]
routes:
  - {host: "*", pool: origin$cache}
CFG
}

# nginx_conf MODE writes nginx's config: one worker (the server core),
# keep-alive to the client and the origin, the cache on disk under $T
# (page cache), stale content served on error/timeout/5xx.
nginx_conf() {
	local cache="proxy_cache off;"
	[ "$1" = cache ] && cache="proxy_cache c;
			proxy_cache_valid 200 5m;
			proxy_cache_use_stale error timeout http_500 http_502 http_503 http_504;
			proxy_cache_lock on;
			proxy_cache_revalidate on;"
	mkdir -p "$T/nginx/logs" "$T/nginx/cache" "$T/nginx/tmp"
	cat >"$T/nginx/nginx.conf" <<CFG
daemon off;
$( [ "$(id -u)" = 0 ] && echo "user $(id -un) $(id -gn);" ) # the workers must reach \$T
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $T/nginx/tmp/body;
	proxy_temp_path $T/nginx/tmp/proxy;
	fastcgi_temp_path $T/nginx/tmp/fcgi;
	uwsgi_temp_path $T/nginx/tmp/uwsgi;
	scgi_temp_path $T/nginx/tmp/scgi;
	proxy_cache_path $T/nginx/cache levels=1:2 keys_zone=c:10m max_size=64m inactive=1d use_temp_path=off;
	upstream origin { server $ORIGIN; keepalive 64; }
	server {
		listen 127.0.0.1:$PORT ssl;
		server_name $HOST;
		ssl_certificate $T/certs/chain.crt;
		ssl_certificate_key $T/certs/leaf.key;
		# nginx 1.22 offers TLS 1.3 only when asked; pin the suite Gatehouse
		# (Go) picks, so both encrypt with AES-128-GCM.
		ssl_protocols TLSv1.2 TLSv1.3;
		ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
		keepalive_requests 1000000;
		keepalive_timeout 120s;
		location / {
			proxy_pass http://origin;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			$cache
		}
	}
}
CFG
}

# start PEER MODE: the server on SERVER_CPU, waits for a 200.
start() {
	case $1 in
	gatehouse)
		gh_conf "$2"
		GOMAXPROCS=1 taskset -c "$SERVER_CPU" "$T/bin/gatehouse" serve --config "$T/gatehouse.yaml" >"$T/server.log" 2>&1 &
		;;
	nginx)
		nginx_conf "$2"
		taskset -c "$SERVER_CPU" "$NGINX" -p "$T/nginx" -c "$T/nginx/nginx.conf" -e "$T/nginx/logs/error.log" >"$T/server.log" 2>&1 &
		;;
	esac
	SRV_PID=$!
	for _ in $(seq 200); do
		[ "$(curl -sk -o /dev/null -w '%{http_code}' "$URL/ready" 2>/dev/null)" = 200 ] && return 0
		sleep 0.05
	done
	echo "$1 did not answer 200 on $URL/ready:" >&2
	cat "$T/server.log" "$T/nginx/logs/error.log" 2>/dev/null | tail -20 >&2
	exit 1
}
stop() {
	kill "$SRV_PID" 2>/dev/null || true
	wait "$SRV_PID" 2>/dev/null || true
	SRV_PID=
}
start_origin() {
	taskset -c "$LOAD_CPU" "$T/bin/origin" -addr "$ORIGIN" >"$T/origin.log" 2>&1 &
	ORIGIN_PID=$!
	for _ in $(seq 100); do grep -q ready "$T/origin.log" 2>/dev/null && return 0; sleep 0.05; done
	cat "$T/origin.log" >&2
	exit 1
}
stop_origin() {
	kill "$ORIGIN_PID" 2>/dev/null || true
	wait "$ORIGIN_PID" 2>/dev/null || true
	ORIGIN_PID=
	awk '/^served/ {print $2}' "$T/origin.log"
}

# cpu_ticks: utime+stime of the server and its children (nginx's workers,
# cache manager and loader), in clock ticks.
cpu_ticks() {
	local p sum=0 t
	for p in $SRV_PID $(ps -o pid= --ppid "$SRV_PID"); do
		t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) || t=0
		sum=$((sum + ${t:-0}))
	done
	echo "$sum"
}

# load PEER MODE PATH SECONDS: one wrk run; appends a row to $T/rows.
load() {
	local c0 c1 out
	c0=$(cpu_ticks)
	out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$C" -d"${4}s" --latency "$URL$3")
	c1=$(cpu_ticks)
	echo "$out" >>"$T/wrk.log"
	echo "$out" | awk -v peer="$1" -v mode="$2" -v a="$c0" -v b="$c1" -v hz="$hz" '
		/requests in/ {n = $1}
		/^Requests\/sec/ {rps = $2}
		$1 == "99%" {p99 = $2}
		/Non-2xx/ {bad = $NF}
		/Socket errors/ {gsub(",", ""); err = $4 + $6 + $8 + $10}
		END {
			ok = n > 0 ? (n - bad) / n * 100 : 0
			printf "%s\t%s\t%.0f\t%.4f\t%s\t%.2f\t%d\n", peer, mode, rps, (n > 0 ? (b - a) / hz / n * 1000 : 0), p99, ok, err + 0
		}' | tee -a "$T/rows"
}

run_peer() {
	local peer=$1 served
	start_origin
	start "$peer" proxy
	echo "# $peer: TLS as wrk's OpenSSL negotiates it: $(openssl s_client -connect "127.0.0.1:$PORT" -servername "$HOST" </dev/null 2>/dev/null | awk '/^New,/ {print $2, $NF}')"
	load "$peer" proxy /obj "$D"
	stop
	start "$peer" cache
	curl -sk -o /dev/null "$URL/obj"
	curl -sk -o /dev/null "$URL/obj?ttl=1"
	load "$peer" cached /obj "$D"
	curl -sk -D "$T/hdr.$peer.hit" -o /dev/null "$URL/obj"
	curl -sk -o /dev/null "$URL/obj?ttl=1" # stored again; stale after 1 s
	sleep 1.5
	served=$(stop_origin)
	load "$peer" down-fresh /obj "$DOWN_D"
	load "$peer" down-stale "/obj?ttl=1" "$DOWN_D"
	curl -sk -D "$T/hdr.$peer.stale" -o "$T/body.$peer" "$URL/obj?ttl=1"
	stop
	echo "# $peer: origin answered $served requests in all; stale answer $(wc -c <"$T/body.$peer") bytes, headers: $(grep -i -E '^(HTTP|age|warning|cache-status)' "$T/hdr.$peer.stale" | tr -d '\r' | tr '\n' ' ')"
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, C=$C D=${D}s DOWN_D=${DOWN_D}s; $(go version | awk '{print $3}'), $($NGINX -v 2>&1 | awk '{print $3}'), $(wrk --version 2>&1 | head -1 | awk '{print $1, $2}')"
printf 'peer\tmode\treq/s\tcpu_s/1k\tp99\tok%%\tsock_err\n'
for r in $(seq "$REPEAT"); do
	for p in $PEERS; do run_peer "$p"; done
done

# --- table: medians per (peer, mode), ratios gatehouse/nginx ----------------
echo
awk -F'\t' '
	function med(s,   a, n, i, j, t) {
		n = split(s, a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	{ k = $1 SUBSEP $2; rps[k] = rps[k] " " $3; cpu[k] = cpu[k] " " $4; ok[k] = ok[k] " " $6; if (!($2 in seen)) { seen[$2] = 1; modes[++m] = $2 } }
	END {
		printf "| run | Gatehouse req/s | nginx req/s | req/s ratio | Gatehouse CPU s/1k | nginx CPU s/1k | CPU/1k ratio | 200s Gatehouse | 200s nginx |\n"
		printf "|---|---|---|---|---|---|---|---|---|\n"
		for (i = 1; i <= m; i++) {
			g = "gatehouse" SUBSEP modes[i]; n = "nginx" SUBSEP modes[i]
			gr = med(rps[g]); nr = med(rps[n]); gc = med(cpu[g]); nc = med(cpu[n])
			printf "| %s | %.0f | %.0f | %.2f | %.4f | %.4f | %.2f | %.2f%% | %.2f%% |\n", modes[i], gr, nr, (nr > 0 ? gr / nr : 0), gc, nc, (nc > 0 ? gc / nc : 0), med(ok[g]), med(ok[n])
		}
	}' "$T/rows"
