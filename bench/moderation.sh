#!/bin/bash
# The external moderation service on the event loop: how many requests one
# nginx worker carries when each waits 300 ms for the service, and how
# long other requests on that worker wait meanwhile.
#
#   mock    a second nginx (lua-nginx, its own worker) answering
#           POST /v1/moderations with a clean OpenAI-shaped verdict after
#           MOD_DELAY seconds (ngx.sleep: it holds no thread)
#   gi2     worker_processes 1: /mod/ has gi2 on and gi2_moderation_api
#           pointing at the mock (no cache: every request is a call), then
#           proxies to a static 4 KB answer on the same nginx; /ping is a
#           plain "return 200"
#
# wrk -t1 -c$MOD_CONNS POSTs a 1 KB generation request to /mod/ for
# MOD_DUR seconds while latency_probe.py GETs /ping on the same worker
# every 5 ms over one keep-alive connection (a probe, not a second load).
# Every request waits MOD_DELAY for its verdict, so the ideal throughput
# is MOD_CONNS / MOD_DELAY req/s (200 / 0.3 = 667).  Printed: the
# throughput and its ratio to the ideal (target >= 0.90), and the p99 of
# the GETs during the load (target < 50 ms).
#
#   bash bench/moderation.sh        (run by bench/run.sh at its end)
#
# Environment:
#   MOD_DUR=10  MOD_CONNS=200  MOD_DELAY=0.3  MOD_WARMUP=2 (seconds)
#   GI2_MODULE  NGINX  MODDIR  KEEP=1  STRICT=1 (exit 3 below a target)
#
# Exit status: 0 done; 1 setup, sanity or measurement failure; 3 below
# target (STRICT=1 only).

set -eu -o pipefail

. "$(dirname "$0")/lib.sh"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
GI2_MODULE=${GI2_MODULE:-$ROOT/build/ngx_http_gi2_module.so}
NGINX=${NGINX:-/usr/sbin/nginx}
MODDIR=${MODDIR:-/usr/lib/nginx/modules}
MOD_DUR=${MOD_DUR:-10}
MOD_CONNS=${MOD_CONNS:-200}
MOD_DELAY=${MOD_DELAY:-0.3}
MOD_WARMUP=${MOD_WARMUP:-2}
TARGET_RATIO=0.90
TARGET_P99_MS=50

die() {
    echo "bench: moderation: FAIL: $*" >&2
    exit 1
}

for v in MOD_DUR MOD_CONNS MOD_WARMUP; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number"
done
[[ $MOD_DELAY =~ ^[0-9]*\.?[0-9]+$ ]] || die "MOD_DELAY must be seconds"
for t in wrk curl python3 timeout "$NGINX"; do
    command -v "$t" > /dev/null || die "$t not found (make deps-bench)"
done
[ -f "$GI2_MODULE" ] || die "$GI2_MODULE not built (make module)"
for m in ndk_http_module.so ngx_http_lua_module.so; do
    [ -f "$MODDIR/$m" ] || die "$MODDIR/$m missing (libnginx-mod-http-lua)"
done

D=$(mktemp -d /tmp/gi2-bench-mod.XXXXXX)
chmod 755 "$D"
MASTERS=()

stop_nginx() {
    nginx_quit "$(cat "$1" 2> /dev/null || true)"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_nginx "$D/gi2.pid"
    stop_nginx "$D/mock.pid"
    if [ "${KEEP:-0}" = 1 ]; then
        echo "bench: moderation: kept $D"
    else
        rm -rf "$D"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir "$D/tmp"
cp "$GI2_MODULE" "$D/ngx_http_gi2_module.so"

read -r PORT BPORT MPORT < <(free_ports 3)

# the request: a 1 KB generation request (the prompt padded with words)
python3 - "$D/body.json" << 'EOF'
import json, sys
words = ("a lighthouse on a rocky coast at dawn, soft light, gulls, "
         "waves breaking, long exposure, film grain, ").split()
prompt = " ".join(words[i % len(words)] for i in range(150))[:960]
with open(sys.argv[1], "w") as f:
    json.dump({"model": "gpt-image-1", "prompt": prompt,
               "size": "1024x1024"}, f)
EOF

python3 - "$D/resp_4k.json" << 'EOF'
import json, sys
with open(sys.argv[1], "w") as f:
    json.dump({"created": 1713833628,
               "data": [{"b64_json": "iVBORw0KGgo" * 360}]}, f)
EOF

VERDICT='{"id":"modr-bench","model":"omni-moderation-latest","results":[{"flagged":false,"categories":{"sexual":false,"violence":false,"hate":false},"category_scores":{"sexual":0.0001,"violence":0.0002,"hate":0.0001}}]}'

cat > "$D/mock.conf" << EOF
load_module $MODDIR/ndk_http_module.so;
load_module $MODDIR/ngx_http_lua_module.so;
worker_processes 1;
error_log $D/mock-error.log warn;
pid $D/mock.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $D/tmp/mbody;
    proxy_temp_path $D/tmp/mproxy;
    fastcgi_temp_path $D/tmp/mfastcgi;
    uwsgi_temp_path $D/tmp/muwsgi;
    scgi_temp_path $D/tmp/mscgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    server {
        listen 127.0.0.1:$MPORT backlog=4096;
        location = /v1/moderations {
            content_by_lua_block {
                ngx.req.read_body()
                ngx.sleep($MOD_DELAY)
                ngx.header["Content-Type"] = "application/json"
                ngx.print('$VERDICT')
            }
        }
    }
}
EOF

cat > "$D/gi2.conf" << EOF
load_module $D/ngx_http_gi2_module.so;
worker_processes 1;
error_log $D/error.log warn;
pid $D/gi2.pid;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $D/tmp/body;
    proxy_temp_path $D/tmp/proxy;
    fastcgi_temp_path $D/tmp/fastcgi;
    uwsgi_temp_path $D/tmp/uwsgi;
    scgi_temp_path $D/tmp/scgi;
    keepalive_requests 1000000;
    upstream backend { server 127.0.0.1:$BPORT; keepalive 256; }
    server {
        listen 127.0.0.1:$BPORT backlog=4096;
        default_type application/json;
        root $D;
        keepalive_requests 1000000;
        location / { try_files /resp_4k.json =404; }
    }
    server {
        listen 127.0.0.1:$PORT backlog=4096;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location /mod/ {
            gi2 on;
            gi2_moderation_api http://127.0.0.1:$MPORT/v1/moderations;
            gi2_moderation_timeout 5s;
            proxy_method GET;
            proxy_pass http://backend/;
        }
        location = /ping { return 200 "pong\n"; }
    }
}
EOF

for c in mock gi2; do
    timeout 30 "$NGINX" -p "$D/" -c "$D/$c.conf" -e "$D/$c-start.log" \
        > "$D/$c.out" 2>&1 || die "nginx ($c) did not start: $(cat \
        "$D/$c.out")"
done

URL=http://127.0.0.1:$PORT/mod/v1/images/generations

# sanity: a request goes through the service, and only with it
code=$(curl -s -o "$D/sanity.out" -w '%{http_code}' -H \
    'Content-Type: application/json' --data-binary "@$D/body.json" "$URL")
[ "$code" = 200 ] || die "a request through /mod/ got $code: $(head -c 300 \
    "$D/sanity.out")"
stop_nginx "$D/mock.pid"
sleep 0.3
code=$(curl -s -o "$D/sanity.out" -w '%{http_code}' -H \
    'Content-Type: application/json' --data-binary "@$D/body.json" "$URL")
[ "$code" = 503 ] || die "with the mock down /mod/ got $code, not 503: the" \
    "service is not being asked"
timeout 30 "$NGINX" -p "$D/" -c "$D/mock.conf" -e "$D/mock-start.log" \
    > "$D/mock.out" 2>&1 || die "nginx (mock) did not restart"
LOGOFF=$(stat -c %s "$D/error.log")

# wrk_post SECONDS OUT : the POST load
wrk_post() {
    GI2_BENCH_BODY=$D/body.json timeout $(($1 + 30)) wrk -t1 \
        -c"$MOD_CONNS" -d"$1"s --timeout 10s -s "$BENCH/post.lua" "$URL" \
        > "$2" 2>&1 || die "wrk failed: $(tail -3 "$2")"
}

if [ "$MOD_WARMUP" -gt 0 ]; then
    wrk_post "$MOD_WARMUP" "$D/warmup.out"
fi

GET_URL=http://127.0.0.1:$PORT/ping
timeout $((MOD_DUR + 30)) python3 "$BENCH/latency_probe.py" "$GET_URL" \
    "$MOD_DUR" 0.005 > "$D/get.out" 2>&1 &
GETPID=$!
wrk_post "$MOD_DUR" "$D/post.out"
wait "$GETPID" || die "the GET probe failed: $(tail -3 "$D/get.out")"

rps=$(awk '/^Requests\/sec:/ { print $2 }' "$D/post.out")
[ -n "$rps" ] || die "no Requests/sec in wrk's output: $(cat "$D/post.out")"
if grep -q 'Non-2xx or 3xx responses' "$D/post.out"; then
    die "non-2xx answers during the load: $(grep 'Non-2xx' "$D/post.out")" \
        "$(tail -c +$((LOGOFF + 1)) "$D/error.log" | grep -m3 warn)"
fi
if grep -q 'Socket errors' "$D/post.out"; then
    die "socket errors during the load: $(grep 'Socket errors' \
        "$D/post.out")"
fi
read -r gets gfailed p50ms p99ms maxms < <(awk '$1 == "count" {
    print $2, $4, $6, $8, $10 }' "$D/get.out")
[ -n "${p99ms:-}" ] || die "no latency from the GET probe: $(cat \
    "$D/get.out")"
[ "$gfailed" = 0 ] || die "$gfailed GETs failed during the load"

if grep -qE '\[(alert|crit|emerg)\]' "$D/error.log"; then
    grep -m5 -E '\[(alert|crit|emerg)\]' "$D/error.log" >&2
    die "alerts in nginx's error.log"
fi

read -r ideal ratio ok_ratio ok_p99 < <(python3 -c '
import sys
rps, conns, delay, p99 = map(float, sys.argv[1:5])
ideal = conns / delay
ratio = rps / ideal
print("%.1f %.3f %d %d" % (ideal, ratio, ratio >= float(sys.argv[5]),
                           p99 < float(sys.argv[6])))
' "$rps" "$MOD_CONNS" "$MOD_DELAY" "$p99ms" "$TARGET_RATIO" \
    "$TARGET_P99_MS")

echo
echo "moderation service on the event loop: one worker, $MOD_CONNS" \
    "clients, the service answering after ${MOD_DELAY}s, ${MOD_DUR}s"
printf '  %-34s %10s req/s\n' "POST through the service" "$rps"
printf '  %-34s %10s req/s\n' "ideal ($MOD_CONNS / $MOD_DELAY s)" "$ideal"
printf '  %-34s %10s (target >= %s)%s\n' "ratio" "$ratio" "$TARGET_RATIO" \
    "$([ "$ok_ratio" = 1 ] || echo '  BELOW TARGET')"
printf '  %-34s %10s ms (target < %s ms)%s\n' \
    "p99 of GET /ping meanwhile" "$p99ms" "$TARGET_P99_MS" \
    "$([ "$ok_p99" = 1 ] || echo '  BELOW TARGET')"
printf '  %-34s %10s ms, max %s ms, %s GETs\n' "p50 of GET /ping" "$p50ms" \
    "$maxms" "$gets"
echo "  (one shared, noisy machine: the mock, wrk, the probe and nginx" \
    "share its cores)"

if [ "$ok_ratio" != 1 ] || [ "$ok_p99" != 1 ]; then
    [ "${STRICT:-0}" = 1 ] && exit 3
fi
exit 0
