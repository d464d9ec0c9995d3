#!/bin/bash
# Response-side cost of ngx_gi2_module: 1 MB and 8 MB image answers
# through a plain proxy and through gi2 (response scanner + audit record),
# on one stock nginx (worker_processes 1), all on 127.0.0.1.
#
#   plain   proxy_pass only, the baseline
#   gi2     gi2 on: the request is inspected, the answer is read by the
#           response scanner (base64 decoding and SHA-256 of the PNG) and
#           every request gets an audit record ($gi2_log_json)
#   gi2t    the same with gi2_response_inspection threads=gi2: the scanner
#           runs on a thread pool of POOL_THREADS threads (default 1), the
#           worker's event loop only copies the answer into a ring
#
# A second server of the same nginx serves the answers as static files
# (application/json, sendfile): {"created":...,"data":[{"b64_json":
# "<base64 PNG>"}],"usage":{...}}, the PNG being a signature, IHDR, one
# IDAT of random bytes and IEND (gen_resp.py). The client POSTs the peers'
# body.json to /<loc>/<size>/v1/images/generations with wrk.
#
# Printed: req/s of each size and location (medians; the ratio is the
# median of the rounds' own ratios), the worker's CPU time per response
# and what gi2 adds to it as MB/s of response, the scanner alone
# (resp_speed.c, the module's core fed 16 KB chunks) and the worker's peak
# RSS growth with 64 concurrent 8 MB answers in flight, plain vs gi2
# and gi2t.  The worker's CPU time counts all its threads.
#
#   bash bench/response.sh          (run by bench/run.sh at its end)
#
# Environment (shared with run.sh):
#   DUR=4  ROUNDS=5  WARMUP=1        as in run.sh
#   RSS_DUR=4    seconds each of the 64 clients takes to read its 8 MB
#                (curl --limit-rate 8 MB / RSS_DUR)
#   RSS_ROUNDS=2 RSS measurements per location (fresh nginx each; median)
#   POOL_THREADS=1 the gi2t thread pool's size
#   C1M=8 C8M=4    wrk connections for the 1 MB and the 8 MB answers
#   PEERS  GI2_MODULE  NGINX  KEEP=1  STRICT=1 (exit 3 below a target)
#
# Exit status: 0 done; 1 setup, sanity or measurement failure; 3 below
# target (STRICT=1 only).

set -eu -o pipefail

. "$(dirname "$0")/lib.sh"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
PEERS=${PEERS:-$ROOT/../shared/peers}
GI2_MODULE=${GI2_MODULE:-$ROOT/build/ngx_http_gi2_module.so}
NGINX=${NGINX:-/usr/sbin/nginx}
DUR=${DUR:-4}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-1}
RSS_DUR=${RSS_DUR:-4}
RSS_ROUNDS=${RSS_ROUNDS:-2}
POOL_THREADS=${POOL_THREADS:-1}
URI=/v1/images/generations
SIZES=(1m 8m)
declare -A BYTES=([1m]=1048576 [8m]=8388608)
declare -A CONNS=([1m]=${C1M:-8} [8m]=${C8M:-4})
declare -A SLABEL=([1m]="1 MB" [8m]="8 MB")
RSS_CONNS=64
TARGET=0.90                          # gi2 req/s over plain
RSS_TARGET_KB=$((RSS_CONNS * 64))    # 64 KiB per response in flight
LOCS=(plain gi2 gi2t)
NLOCS=${#LOCS[@]}

die() {
    echo "bench: response: FAIL: $*" >&2
    exit 1
}

for v in DUR ROUNDS WARMUP RSS_DUR RSS_ROUNDS POOL_THREADS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
[ "$DUR" -ge 1 ] && [ "$ROUNDS" -ge 1 ] && [ "$RSS_DUR" -ge 1 ] \
    && [ "$RSS_ROUNDS" -ge 1 ] || die "DUR, ROUNDS, RSS_* must be >= 1"
for t in wrk curl python3 timeout cmp "${CC:-cc}" "$NGINX"; do
    command -v "$t" > /dev/null || die "$t not found (make deps-bench)"
done
[ -f "$GI2_MODULE" ] || die "$GI2_MODULE not built (make module)"
BODY=$PEERS/body.json
[ -r "$BODY" ] || die "$BODY missing (set PEERS=)"

D=$(mktemp -d /tmp/gi2-bench-resp.XXXXXX)
chmod 755 "$D"
MASTER=

# stop_nginx : graceful stop of our master (logs flushed), then TERM
stop_nginx() {
    if [ -n "$MASTER" ]; then
        nginx_quit "$MASTER"
        wait "$MASTER" 2> /dev/null || true
    fi
    MASTER=
}

SAMPLER=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$SAMPLER" ]; then
        kill "$SAMPLER" 2> /dev/null || true
        wait "$SAMPLER" 2> /dev/null || true
    fi
    stop_nginx
    if [ "${KEEP:-0}" = 1 ]; then
        echo "bench: response: kept $D"
    else
        rm -rf "$D"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir "$D/tmp"
cp "$GI2_MODULE" "$D/ngx_http_gi2_module.so"     # private copy, see run.sh

# the answers: NAME FILE_BYTES PNG_BYTES SHA256
declare -A PNGLEN=() SHA=()
args=()
for s in "${SIZES[@]}"; do
    args+=("resp_$s:${BYTES[$s]}")
done
while read -r name len plen sha; do
    s=${name#resp_}
    [ "$len" = "${BYTES[$s]}" ] || die "gen_resp.py: $name is $len B"
    PNGLEN[$s]=$plen
    SHA[$s]=$sha
done < <(python3 "$BENCH/gen_resp.py" "$D" "${args[@]}")
# an independent check of gen_resp.py's hash: decode with python's json
# and base64, hash with sha256sum
for s in "${SIZES[@]}"; do
    h=$(python3 -c 'import base64, json, sys
sys.stdout.buffer.write(base64.b64decode(
    json.load(open(sys.argv[1]))["data"][0]["b64_json"], validate=True))' \
        "$D/resp_$s.json" | sha256sum | cut -d' ' -f1)
    [ "$h" = "${SHA[$s]}" ] || die "resp_$s.json: PNG sha256 $h," \
        "gen_resp.py said ${SHA[$s]}"
done

# --- the scanner alone, built from the module's core sources
SPEED=$ROOT/build/resp_speed
mkdir -p "$ROOT/build"
"${CC:-cc}" -std=c99 -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -O2 -g \
    -Wall -Wextra -Werror -Wno-unused-parameter \
    -I "$ROOT/ngx_gi2_module" -I /usr/include/yajl -o "$SPEED.tmp" \
    "$BENCH/resp_speed.c" "$ROOT"/ngx_gi2_module/gi2_{norm,req,match,resp}.c \
    -lpcre2-8 -lyajl -lutf8proc -lcrypto > "$D/cc.out" 2>&1 || {
    cat "$D/cc.out" >&2
    die "cannot build $SPEED"
}
mv -f "$SPEED.tmp" "$SPEED"

read -r PORT BPORT < <(free_ports 2)

# nginx's defaults are kept for the proxy's buffers: proxy_buffering on,
# proxy_buffers 8 4k|8k (one page), proxy_busy_buffers_size 2 pages,
# temp files up to 1024m, output_buffers 2 32k. sendfile on as in
# Debian's nginx.conf.
cat > "$D/nginx.conf" << EOF
load_module $D/ngx_http_gi2_module.so;
worker_processes 1;
thread_pool gi2 threads=$POOL_THREADS;
error_log $D/error.log warn;
pid $D/nginx.pid;
events { worker_connections 4096; }
http {
    sendfile on;
    access_log off;
    client_body_buffer_size 64k;
    client_body_temp_path $D/tmp/body;
    proxy_temp_path $D/tmp/proxy;
    fastcgi_temp_path $D/tmp/fastcgi;
    uwsgi_temp_path $D/tmp/uwsgi;
    scgi_temp_path $D/tmp/scgi;
    log_format gi2 escape=none '\$gi2_log_json';
    upstream backend { server 127.0.0.1:$BPORT; keepalive 64; }
    server {
        listen 127.0.0.1:$BPORT;
        default_type application/json;
        root $D;
        location /1m/ { try_files /resp_1m.json =404; }
        location /8m/ { try_files /resp_8m.json =404; }
    }
    server {
        listen 127.0.0.1:$PORT;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location /plain/ {
            access_log $D/plain.log combined buffer=64k flush=1s;
            proxy_method GET;
            proxy_pass http://backend/;
        }
        location /gi2/ {
            gi2 on;
            access_log $D/audit.log gi2 buffer=64k flush=1s;
            access_log $D/sanity.log gi2 if=\$arg_sanity;
            proxy_method GET;
            proxy_pass http://backend/;
        }
        location /gi2t/ {
            gi2 on;
            gi2_response_inspection threads=gi2;
            access_log $D/audit.log gi2 buffer=64k flush=1s;
            access_log $D/sanity.log gi2 if=\$arg_sanity;
            proxy_method GET;
            proxy_pass http://backend/;
        }
    }
}
EOF

timeout 30 "$NGINX" -t -q -p "$D/" -c "$D/nginx.conf" -e "$D/error.log" \
    > "$D/nginx-t.out" 2>&1 || {
    cat "$D/nginx-t.out" >&2
    die "nginx -t rejects $D/nginx.conf"
}

start_nginx() {
    local i
    "$NGINX" -p "$D/" -c "$D/nginx.conf" -e "$D/error.log" \
        -g 'daemon off;' >> "$D/nginx.out" 2>&1 &
    MASTER=$!
    for i in $(seq 50); do
        kill -0 "$MASTER" 2> /dev/null || break
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$BPORT/1m/" \
            && break
        sleep 0.1
    done
    if ! kill -0 "$MASTER" 2> /dev/null; then
        cat "$D/nginx.out" "$D/error.log" >&2
        MASTER=
        die "nginx did not start"
    fi
    WORKER=$(worker_pid)
}

worker_pid() {
    local s pid comm state ppid rest found=
    for s in /proc/[0-9]*/stat; do
        read -r pid comm state ppid rest 2> /dev/null < "$s" || continue
        if [ "$ppid" = "$MASTER" ]; then
            [ -z "$found" ] || die "more than one nginx worker"
            found=$pid
        fi
    done
    [ -n "$found" ] || die "no nginx worker found"
    echo "$found"
}

worker_ticks() {
    awk '{ print $14 + $15 }' "/proc/$WORKER/stat"
}

status_kb() {
    awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"
}

start_nginx
HZ=$(getconf CLK_TCK)

echo "bench: response side: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')," \
    "worker_processes 1, sendfile on, proxy buffers: nginx defaults;" \
    "${DUR}s x $ROUNDS rounds"
for s in "${SIZES[@]}"; do
    echo "bench: response: resp_$s.json ${BYTES[$s]} B, PNG ${PNGLEN[$s]} B" \
        "sha256 ${SHA[$s]:0:16}..."
done
echo "bench: load average $(cut -d' ' -f1-3 /proc/loadavg) before the run"

# --- sanity: byte-identical answers, and the audit record's SHA-256 is
# the PNG's
# check_record FILE SIZE WHAT : the last record of FILE must describe one
# complete, inspected PNG with the right hash, size and dimensions
check_record() {
    python3 - "$1" "${SHA[$2]}" "${PNGLEN[$2]}" "$3" << 'EOF' || return 1
import json, sys
path, sha, plen, what = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
lines = [l for l in open(path, encoding="utf-8") if l.strip()]
if not lines:
    sys.exit("bench: response: sanity: %s: no audit record" % what)
r = json.loads(lines[-1])
g = r["gi2"]
items = g["images"]["items"]
want = {"inspected": True, "truncated": False, "malformed": False}
got = {k: g["response"][k] for k in want}
bad = []
if got != want:
    bad.append("response %s" % got)
if g["images"]["count"] != 1 or len(items) != 1:
    bad.append("images.count %s" % g["images"]["count"])
else:
    i = items[0]
    if i["sha256"] != sha:
        bad.append("sha256 %s, want %s (python3 + sha256sum)"
                   % (i["sha256"], sha))
    if i["bytes"] != plen:
        bad.append("bytes %s, want %d" % (i["bytes"], plen))
    if (i["format"], i["width"], i["height"], i["truncated"],
            i["bad_base64"]) != ("png", 1024, 1024, False, False):
        bad.append("item %s" % json.dumps(i))
if r["http"]["response"]["status_code"] != 200:
    bad.append("status %s" % r["http"]["response"]["status_code"])
if bad:
    sys.exit("bench: response: sanity: %s: audit record: %s"
             % (what, "; ".join(bad)))
EOF
}

# sanity_get LOC SIZE HOW OUT : one answer into OUT; prints the status
sanity_get() {
    local url="/$1/$2$URI?sanity=1"
    if [ "$3" = fast ]; then
        curl -sS -o "$4" -w '%{http_code}' --max-time 30 -X POST \
            -H 'Content-Type: application/json' --data-binary @"$BODY" \
            "http://127.0.0.1:$PORT$url" 2>&1 || true
    else
        timeout 60 python3 "$BENCH/stalled_client.py" "$PORT" "$url" \
            "$BODY" "$4" 2>&1 | awk '{ print $2 }' || true
    fi
}

FAILS=0
TMPFILES=$(grep -c 'buffered to a temporary file' "$D/error.log" || true)
for s in "${SIZES[@]}"; do
    for l in "${LOCS[@]}"; do
        # fast: curl; stalled: a client that reads nothing for a second,
        # so that nginx parks most of the answer in a temporary file and
        # the filters get file buffers (sendfile on)
        for how in fast stalled; do
            out=$D/check.out
            rm -f "$out"
            n0=$(wc -l < "$D/sanity.log" 2> /dev/null || echo 0)
            code=$(sanity_get "$l" "$s" "$how" "$out")
            n1=$(wc -l < "$D/sanity.log" 2> /dev/null || echo 0)
            what="$l $s ($how client)"
            if [ "$code" != 200 ]; then
                echo "bench: response: sanity: $what: got $code" >&2
                FAILS=$((FAILS + 1))
            elif ! cmp -s "$out" "$D/resp_$s.json"; then
                echo "bench: response: sanity: $what: the answer differs" \
                    "from the upstream's: $(cmp "$out" "$D/resp_$s.json" \
                    2>&1 | head -1)" >&2
                FAILS=$((FAILS + 1))
            elif [ "$l" != plain ] && [ $((n1 - n0)) != 1 ]; then
                echo "bench: response: sanity: $what: $((n1 - n0)) audit" \
                    "records, want 1" >&2
                FAILS=$((FAILS + 1))
            elif [ "$l" != plain ] && ! check_record "$D/sanity.log" "$s" \
                "$what"; then
                FAILS=$((FAILS + 1))
            fi
        done
    done
done
[ "$FAILS" = 0 ] || die "$FAILS sanity check(s) failed"
TMPFILES=$(( $(grep -c 'buffered to a temporary file' "$D/error.log" \
    || true) - TMPFILES ))
[ "$TMPFILES" -gt 0 ] || echo "bench: response: note: no answer went" \
    "through a temporary file in the stalled-client checks"
echo "bench: response: sanity ok: answers byte-identical on plain, gi2" \
    "and gi2t; their audit records have the PNG's SHA-256, size and 1024x1024," \
    "with a fast and with a stalled client ($TMPFILES of $((NLOCS * 2)) stalled" \
    "answers went through a temporary file)"

# --- throughput
# wrk_run LOC SIZE SECONDS [CONNS]: prints "req/s worker-us-per-request
# requests"; fails on non-2xx or socket errors
wrk_run() {
    local out rps bad t0 t1 n c=${4:-${CONNS[$2]}}
    t0=$(worker_ticks)
    out=$(GI2_BENCH_BODY=$BODY timeout $(($3 + 60)) wrk -t1 -c"$c" \
        -d"$3"s --timeout 20s -s "$BENCH/post.lua" \
        "http://127.0.0.1:$PORT/$1/$2$URI" 2>&1) || {
        echo "bench: response: wrk failed on $1 $2: $out" >&2
        return 1
    }
    t1=$(worker_ticks 2> /dev/null) || {
        echo "bench: response: the nginx worker died during $1 $2:" \
            "$(grep -m3 -E '\[(alert|crit|emerg)\]' "$D/error.log")" >&2
        return 1
    }
    rps=$(awk '/^Requests\/sec:/ { printf "%.1f", $2 }' <<< "$out")
    n=$(awk '/ requests in / { print $1 }' <<< "$out")
    bad=$(awk '/Non-2xx or 3xx responses:/ { n += $NF }
               /Socket errors:/ { gsub(",", ""); n += $4 + $6 + $8 + $10 }
               END { print n + 0 }' <<< "$out")
    if [ -z "$rps" ] || [ -z "$n" ] || [ "$n" = 0 ] || [ "$bad" != 0 ]; then
        echo "bench: response: $1 $2: $bad failed requests (non-2xx or" \
            "socket errors):" >&2
        echo "$out" >&2
        return 1
    fi
    awk -v r="$rps" -v t=$((t1 - t0)) -v hz="$HZ" -v n="$n" \
        'BEGIN { printf "%s %.1f %d\n", r, t / hz * 1e6 / n, n }'
}

median() {
    tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 }
        END { if (NR % 2) print a[(NR + 1) / 2];
              else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

if [ "$WARMUP" -gt 0 ]; then
    for s in "${SIZES[@]}"; do
        for l in "${LOCS[@]}"; do
            wrk_run "$l" "$s" "$WARMUP" > /dev/null \
                || die "warm-up failed on $l $s"
        done
    done
fi

BELOW=0
declare -A RES=() CPU=() ROUND=() REQS=()
TMPWARN0=$(grep -c 'buffered to a temporary file' "$D/error.log" || true)
for s in "${SIZES[@]}"; do
    for r in $(seq "$ROUNDS"); do
        printf 'round %d/%d (%s):' "$r" "$ROUNDS" "${SLABEL[$s]}"
        for i in $(seq 0 $((NLOCS - 1))); do
            l=${LOCS[$(((i + r - 1) % NLOCS))]}
            m=$(wrk_run "$l" "$s" "$DUR") || die "measurement failed on $l $s"
            read -r rps cpu n <<< "$m"
            RES[$l,$s]="${RES[$l,$s]-} $rps"
            ROUND[$l,$s,$r]=$rps
            CPU[$l,$s]="${CPU[$l,$s]-} $cpu"
            REQS[$l]=$((${REQS[$l]-0} + n))
            printf '  %s %s' "$l" "$rps"
        done
        printf '\n'
    done
done
TMPWARN=$(( $(grep -c 'buffered to a temporary file' "$D/error.log" \
    || true) - TMPWARN0 ))

W2=$(worker_pid)
[ "$W2" = "$WORKER" ] || die "the worker was replaced during the run" \
    "(pid $WORKER -> $W2): $(grep -m3 -E '\[(alert|crit|emerg)\]' \
    "$D/error.log")"

# the scanner alone (no nginx traffic meanwhile)
SCAN=$("$SPEED" "$D/resp_8m.json" "${SHA[8m]}" 1.5 16384) \
    || die "resp_speed failed"
SCAN_MBPS=${SCAN%% *}

# every audit record of the measurements must carry the PNG's hash; the
# few answers cut when wrk stopped (at most CONNS per run) say truncated
stop_nginx
AUDIT=$(python3 - "$D/audit.log" "${SHA[1m]}" "${SHA[8m]}" \
    "$((4 * ROUNDS + 4))" "${CONNS[1m]}" "${CONNS[8m]}" \
    "$((REQS[gi2] + REQS[gi2t]))" \
    << 'EOF'
import json, sys
path, sha1, sha8 = sys.argv[1:4]
runs, c1, c8, reqs = (int(x) for x in sys.argv[4:8])
sha = {"1m": sha1, "8m": sha8}
ok = cut = 0
bad = []
for n, line in enumerate(open(path, encoding="utf-8"), 1):
    r = json.loads(line)
    g = r["gi2"]
    size = r["url"]["path"].split("/")[2]
    items = g["images"]["items"]
    if (g["response"]["inspected"] and not g["response"]["truncated"]
            and not g["response"]["malformed"] and g["images"]["count"] == 1
            and items[0]["sha256"] == sha[size]
            and r["http"]["response"]["status_code"] == 200):
        ok += 1
    elif (g["response"]["truncated"] is True
            or r["http"]["response"]["status_code"] == 499
            and not g["response"]["inspected"]):
        # cut by wrk's stop: mid-answer, or before the upstream answered
        cut += 1
    else:
        bad.append("line %d: status %s, %s, images %s, items %s"
                   % (n, r["http"]["response"]["status_code"],
                      json.dumps(g["response"]), g["images"]["count"],
                      json.dumps(items)))
if bad or cut > runs * max(c1, c8) or ok < reqs:
    print("FAIL %d %d %d %s" % (ok, cut, len(bad), " | ".join(bad[:3])))
else:
    print("ok %d %d" % (ok, cut))
EOF
) || die "cannot read the audit log"
read -r verdict aok acut rest <<< "$AUDIT"
[ "$verdict" = ok ] || die "audit records of the measured gi2 and gi2t requests:" \
    "$aok complete with the right SHA-256, $acut cut, ${rest:-}" \
    "(wrk counted $((REQS[gi2] + REQS[gi2t])) gi2 and gi2t responses)"

# --- RSS: 64 concurrent 8 MB answers, a fresh nginx per measurement
# rss_run LOC : sets RSS_GROW, RSS_HWM (the worker's peak VmRSS growth in
# kB over its RSS after two answers: sampled every 100 ms, and from
# VmHWM), RSS_IDLE and RSS_SECS. 64 curl clients start together, each
# reading at 8 MB / RSS_DUR per second, so all 64 answers are in flight
# for about RSS_DUR seconds.
rss_run() {
    local i pids=() rate=$((BYTES[8m] / RSS_DUR)) t0 t1 bad
    local url="http://127.0.0.1:$PORT/$1/8m$URI"
    start_nginx
    for i in 1 2; do
        curl -sS -o /dev/null --max-time 30 -X POST \
            -H 'Content-Type: application/json' --data-binary @"$BODY" \
            "$url" || return 1
    done
    RSS_IDLE=$(status_kb "$WORKER" VmRSS)
    echo "$RSS_IDLE" > "$D/rss.peak"
    (
        p=0
        while v=$(status_kb "$WORKER" VmRSS 2> /dev/null) && [ -n "$v" ]; do
            if [ "$v" -gt "$p" ]; then
                p=$v
                echo "$p" > "$D/rss.peak"
            fi
            sleep 0.1
        done
    ) &
    SAMPLER=$!
    t0=$(date +%s%N)
    for i in $(seq "$RSS_CONNS"); do
        curl -sS -o /dev/null -w '%{http_code} %{size_download}\n' \
            --max-time $((RSS_DUR * 5 + 30)) --limit-rate "$rate" \
            -X POST -H 'Content-Type: application/json' \
            --data-binary @"$BODY" "$url" > "$D/rss.$i" 2>&1 &
        pids+=($!)
    done
    for i in "${pids[@]}"; do
        wait "$i" || true
    done
    t1=$(date +%s%N)
    RSS_HWM=$(($(status_kb "$WORKER" VmHWM) - RSS_IDLE))
    kill "$SAMPLER" 2> /dev/null || true
    wait "$SAMPLER" 2> /dev/null || true
    SAMPLER=
    RSS_GROW=$(($(cat "$D/rss.peak") - RSS_IDLE))
    RSS_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    bad=$(cat "$D"/rss.[0-9]* | grep -vcx "200 ${BYTES[8m]}" || true)
    if [ "$bad" != 0 ]; then
        echo "bench: response: RSS run on $1: $bad of $RSS_CONNS answers" \
            "not 200 with ${BYTES[8m]} B: $(cat "$D"/rss.[0-9]* | sort \
            | uniq -c | head -3)" >&2
        return 1
    fi
    rm -f "$D"/rss.[0-9]* "$D/rss.peak"
    stop_nginx
}

declare -A RSS=() HWM=() IDLE=() SECS=()
for r in $(seq "$RSS_ROUNDS"); do
    for l in "${LOCS[@]}"; do
        rss_run "$l" || die "RSS measurement failed on $l"
        RSS[$l]="${RSS[$l]-} $RSS_GROW"
        HWM[$l]="${HWM[$l]-} $RSS_HWM"
        IDLE[$l]="${IDLE[$l]-} $RSS_IDLE"
        SECS[$l]="${SECS[$l]-} $RSS_SECS"
    done
done

# --- report
mb() {
    awk -v k="$1" 'BEGIN { printf "%+.1f MiB", k / 1024 }'
}

for s in "${SIZES[@]}"; do
    echo "--- response side: ${SLABEL[$s]} image responses" \
        "(wrk -t1 -c${CONNS[$s]}, medians over $ROUNDS rounds of ${DUR}s)"
    for l in "${LOCS[@]}"; do
        med=$(median <<< "${RES[$l,$s]}")
        line=$(awk -v l="$l" -v m="$med" -v b="${BYTES[$s]}" \
            'BEGIN { printf "%-6s %7.1f req/s (%4.0f MB/s)", l, m,
                     m * b / 1e6 }')
        if [ "$l" != plain ]; then
            ratio=$(for r in $(seq "$ROUNDS"); do
                        awk -v a="${ROUND[$l,$s,$r]}" \
                            -v b="${ROUND[plain,$s,$r]}" \
                            'BEGIN { print a / b }'
                    done | median | awk '{ printf "%.2f", $1 }')
            line="$line = ${ratio}x plain (target >= $TARGET)"
            if awk -v r="$ratio" -v t="$TARGET" 'BEGIN { exit !(r < t) }'
            then
                line="$line BELOW TARGET"
                BELOW=1
            fi
        fi
        echo "$line"
    done
    cp=$(median <<< "${CPU[plain,$s]}")
    cg=$(median <<< "${CPU[gi2,$s]}")
    ct=$(median <<< "${CPU[gi2t,$s]}")
    awk -v p="$cp" -v g="$cg" -v t="$ct" -v b="${BYTES[$s]}" 'BEGIN {
        printf "worker CPU per response (proxy + backend, all threads):" \
               " plain %.0f us, gi2 %.0f us (%+.0f us), gi2t %.0f us" \
               " (%+.0f us)\n", p, g, g - p, t, t - p
        if (g - p > 0)
            printf "inspection: %.0f MB/s of response (worker CPU, gi2)\n",
                   b / 1e6 / ((g - p) / 1e6)
        else
            printf "inspection: not measurable from worker CPU (gi2 took" \
                   " no more than plain: noise)\n" }'
    spread=$(for l in "${LOCS[@]}"; do
                 tr ' ' '\n' <<< "${RES[$l,$s]}" | grep . | sort -g | awk \
                     -v l="$l" '{ a[NR] = $1; t += $1 }
                     END { if (NR > 1 && (a[NR] - a[1]) / (t / NR) > 0.15)
                               printf " %s %s..%s", l, a[1], a[NR] }'
             done)
    if [ -n "$spread" ]; then
        echo "bench: warning: req/s varied across rounds:$spread;" \
            "was the machine busy? (load average now" \
            "$(cut -d' ' -f1-3 /proc/loadavg))"
    fi
done

read -r _ scan_passes _ sha_us <<< "$SCAN"
echo "inspection: $SCAN_MBPS MB/s of response (scanner alone: resp_speed," \
    "median of $scan_passes passes over the 8 MB answer in 16 KB pieces)"
awk -v s="$sha_us" -v b="${PNGLEN[8m]}" -v p="$(median <<< "${CPU[plain,8m]}")" \
    'BEGIN { printf "of which SHA-256 of the %.1f MB PNG alone (one OpenSSL" \
                    " call): %.0f us per 8 MB answer (%.0f MB/s), %.0f%% of" \
                    " plain'"'"'s worker CPU per answer; hashed on the" \
                    " worker'"'"'s thread, it bounds gi2 near %.2fx plain where" \
                    " the worker is the bottleneck\n", b / 1e6, s,
                    b / s, s * 100 / p, p / (p + s) }'
echo "audit: $aok gi2 and gi2t records with the PNG's SHA-256 ($acut cut when wrk" \
    "stopped); upstream answers buffered to a temporary file:" \
    "$TMPWARN times during the measurements"

rp=$(median <<< "${RSS[plain]}")
hp=$(median <<< "${HWM[plain]}")
for l in gi2 gi2t; do
    rg=$(median <<< "${RSS[$l]}")
    diff=$(awk -v a="$rg" -v b="$rp" 'BEGIN { printf "%d", a - b }')
    line="RSS peak growth, $RSS_CONNS x 8 MB in flight: plain $(mb "$rp"),"
    line="$line $l $(mb "$rg"): $(mb "$diff") over plain"
    line="$line (target < $((RSS_TARGET_KB / 1024)) MiB = $RSS_CONNS x 64 KiB)"
    if [ "$diff" -ge "$RSS_TARGET_KB" ]; then
        line="$line ABOVE TARGET"
        BELOW=1
    fi
    echo "$line"
done
list() {
    local x
    for x in $1; do
        printf ' %s' "$x"
    done
}
echo "  (VmRSS sampled every 100 ms, median of $RSS_ROUNDS fresh workers;" \
    "VmHWM growth plain $(mb "$hp"), gi2 $(mb "$(median <<< "${HWM[gi2]}")")," \
    "gi2t $(mb "$(median <<< "${HWM[gi2t]}")"); idle RSS after two answers:" \
    "plain$(list "${IDLE[plain]}"), gi2$(list "${IDLE[gi2]}")," \
    "gi2t$(list "${IDLE[gi2t]}") kB; $RSS_CONNS curl clients at" \
    "$(awk -v r="$RSS_DUR" 'BEGIN { printf "%.1f", 8 / r }') MiB/s each," \
    "done in plain$(list "${SECS[plain]}"), gi2$(list "${SECS[gi2]}")," \
    "gi2t$(list "${SECS[gi2t]}") s)"

if grep -qE '\[(alert|crit|emerg)\]' "$D/error.log"; then
    grep -m5 -E '\[(alert|crit|emerg)\]' "$D/error.log" >&2
    die "alerts in nginx's error.log"
fi
nlog=$(grep -E '\[(error|warn)\]' "$D/error.log" \
    | grep -vc 'buffered to a temporary file' || true)
if [ "$nlog" != 0 ]; then
    echo "bench: response: note: $nlog error/warn lines in error.log:"
    grep -E '\[(error|warn)\]' "$D/error.log" \
        | grep -v 'buffered to a temporary file' | head -3
fi

if [ "$BELOW" = 1 ] && [ "${STRICT:-0}" = 1 ]; then
    exit 3
fi
exit 0
