#!/bin/bash
# Soak: a stock nginx with the module (worker_processes 2) under a mix of
# allowed, rule-rejected, moderation-rejected, rewritten, exception,
# malformed, streaming and 8 MB requests at about 80% of the capacity
# measured first, with `nginx -s reload` every RELOAD seconds.
#
#   make soak                        (SOAK_DUR=600 by default)
#   SOAK_DUR=120 bash bench/soak.sh
#
# Reports, and fails (exit 1) unless all hold:
#   worker crashes                   0 ("exited on signal" in error.log)
#   failed requests                  0 (wrong status for the kind, or a
#                                    socket error)
#   audit records vs requests sent   equal: every request wrk sent has
#                                    its JSON record (gi2.decision etc.)
#   worker memory growth             under 1% in each worker life,
#                                    after WARM seconds of warm-up:
#                                    what malloc has in use, least
#                                    sample of the life's last third
#                                    against that of its first third
#                                    (see "Memory" below)
#   secrets                          the bearer token and the prompt
#                                    marker appear in no log
#
# Memory.  Every second the master's and each worker's VmRSS and its
# parts RssAnon, RssFile and RssShmem are read from /proc/PID/status,
# and each worker's malloc in use (mallinfo2: uordblks + hblkhd) from
# bench/heap_probe.c, preloaded into the gateway nginx: a thread in each
# worker reads it every 50 ms and writes the least reading of each
# second.  A worker life runs from the worker's
# first sample to the next reload (after which it only shuts down); its
# first WARM (10) seconds are its warm-up: under the soak's load a
# worker's malloc in use is at its plateau by its second sample (its
# first requests make about 170 kB that nginx and the libraries keep),
# and its RssFile (the pages of nginx, the module and the libraries that
# it touches) by its first.
#
# What is checked is malloc in use, the memory that a leak keeps: its
# floor (least sample) in the last third of the life against that in the
# first third, under 1% of the first.  The requests in flight only add
# to a reading and come and go, and the least of 20 readings a second
# is the one with the fewest; memory that leaks is in every later
# reading and raises the floor.  RSS is printed for each life, not
# checked: a worker's RssAnon is malloc in use plus the free memory that
# glibc keeps in its heap (the top pad and free chunks under a chunk in
# use, which cannot be given back), and that part moves with the heap's
# fragmentation, both ways, by up to about 140 kB (3.5% of RssAnon) in a
# 20-second life, and stays moved for many seconds; a 10-minute soak
# measured so had lives from -2.7% to +3.5% around a mean of +0.1%.
# RssFile and RssShmem (nginx's own 4 kB; the soak sets up no gi2 zone)
# did not move in any life.  bench/README.md has the data.
#
# Environment: SOAK_DUR=600 RELOAD=30 CAP_DUR=10 LOAD=0.8 CONNS=16
# WARM=10 KEEP=1 SMAPS=0 NGINX GI2_MODULE

set -eu -o pipefail

. "$(dirname "$0")/lib.sh"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
GI2_MODULE=${GI2_MODULE:-$ROOT/build/ngx_http_gi2_module.so}
NGINX=${NGINX:-/usr/sbin/nginx}
SOAK_DUR=${SOAK_DUR:-600}
RELOAD=${RELOAD:-30}
CAP_DUR=${CAP_DUR:-10}
LOAD=${LOAD:-0.8}
CONNS=${CONNS:-16}
WARM=${WARM:-10}
RSS_LIMIT=1.0                      # percent

die() {
    echo "soak: FAIL: $*" >&2
    exit 1
}

for v in SOAK_DUR RELOAD CAP_DUR CONNS WARM; do
    [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -ge 1 ] \
        || die "$v must be a whole number >= 1, not '${!v}'"
done
[[ $LOAD =~ ^0?\.[0-9]+$|^1(\.0*)?$ ]] || die "LOAD must be in (0, 1]"
for t in wrk curl python3 "$NGINX"; do
    command -v "$t" > /dev/null || die "$t not found (make deps-bench)"
done
[ -f "$GI2_MODULE" ] || die "$GI2_MODULE not built (make module)"

D=$(mktemp -d /tmp/gi2-soak.XXXXXX)
chmod 755 "$D"
SAMPLER=
RELOADER=

# quit PIDFILE : graceful stop of the nginx whose master is in PIDFILE
quit() {
    nginx_quit "$(cat "$1" 2> /dev/null || true)"
}

stop_all() {
    for p in "$SAMPLER" "$RELOADER"; do
        [ -n "$p" ] && kill "$p" 2> /dev/null && wait "$p" 2> /dev/null
    done
    SAMPLER=
    RELOADER=
    quit "$D/nginx.pid"
    quit "$D/backend.pid"
    return 0
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_all
    if [ "${KEEP:-0}" = 1 ]; then
        echo "soak: kept $D"
    else
        rm -rf "$D"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir "$D/tmp"
touch "$D/reloads.log" "$D/reload.err"        # none if RELOAD > SOAK_DUR
cp "$GI2_MODULE" "$D/ngx_http_gi2_module.so"    # a rebuild can't crash us

# heap_probe.so: each worker's malloc in use, in $D/heap/PID (see the
# header and heap_probe.c)
"${CC:-cc}" -std=c99 -O2 -g -Wall -Wextra -Werror -fPIC -shared -pthread \
    -o "$D/heap_probe.so" "$BENCH/heap_probe.c" > "$D/cc.out" 2>&1 || {
    cat "$D/cc.out" >&2
    die "cannot build heap_probe.so"
}
mkdir "$D/heap"
chmod 1777 "$D/heap"          # the workers may no longer be root
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$D/gi2.key"
chmod 600 "$D/gi2.key"

# upstream answers: a small and an 8 MB JSON answer, and an event stream
python3 "$BENCH/gen_resp.py" "$D" resp_small:4096 resp_8m:8388608 \
    > /dev/null || die "gen_resp.py failed"
python3 - "$D/resp.sse" << 'EOF'
import base64, json, sys
b64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8).decode()
ev = []
for i in range(2):
    ev.append(("image_generation.partial_image",
               {"type": "image_generation.partial_image", "b64_json": b64,
                "partial_image_index": i, "size": "1024x1024"}))
ev.append(("image_generation.completed",
           {"type": "image_generation.completed", "b64_json": b64,
            "size": "1024x1024", "usage": {"input_tokens": 50,
            "output_tokens": 4160, "total_tokens": 4210}}))
with open(sys.argv[1], "w") as f:
    for name, data in ev:
        f.write("event: %s\ndata: %s\n\n" % (name, json.dumps(data)))
EOF

read -r PORT BPORT < <(free_ports 2)

# the upstream: an nginx of its own, which the reloads leave alone (in
# the gateway's nginx, each reload would also close the gateway's idle
# keep-alive connections to it, and a POST sent on one at that moment
# gets a 502: a race of the test's making, not the gateway's)
cat > "$D/backend.conf" << EOF
worker_processes 1;
error_log $D/backend-error.log warn;
pid $D/backend.pid;
events { worker_connections 4096; }
http {
    sendfile on;
    access_log off;
    server {
        listen 127.0.0.1:$BPORT;
        root $D;
        location /small/ {
            default_type application/json;
            try_files /resp_small.json =404;
        }
        location /8m/ {
            default_type application/json;
            try_files /resp_8m.json =404;
        }
        location /sse/ {
            default_type text/event-stream;
            try_files /resp.sse =404;
        }
    }
}
EOF

cat > "$D/nginx.conf" << EOF
load_module $D/ngx_http_gi2_module.so;
worker_processes 2;
error_log $D/error.log notice;
pid $D/nginx.pid;
events { worker_connections 4096; }
http {
    sendfile on;
    access_log off;
    client_body_temp_path $D/tmp/body;
    proxy_temp_path $D/tmp/proxy;
    fastcgi_temp_path $D/tmp/fastcgi;
    uwsgi_temp_path $D/tmp/uwsgi;
    scgi_temp_path $D/tmp/scgi;

    log_format gi2 escape=none '\$gi2_log_json';
    log_format kind '\$http_x_soak_kind \$status';
    gi2_hash_key_file $D/gi2.key;
    gi2_price gpt-image-1 input=5 output=40;
    gi2_rule sx-001 deny sexual '\\bnude\\b';
    gi2_exception EXC-SOAK-1 expires=2099-12-31;
    gi2_moderation_low reject;
    gi2_consumer \$http_authorization;

    upstream backend { server 127.0.0.1:$BPORT; keepalive 64; }
    server {
        listen 127.0.0.1:$PORT;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_method GET;
        add_header X-Soak-Kind \$http_x_soak_kind always;
        access_log $D/audit.log gi2 buffer=64k flush=1s;
        access_log $D/kind.log kind buffer=64k flush=1s;
        location /gi2/ {
            gi2 on;
            proxy_pass http://backend/;
        }
        location /rw/ {
            gi2 on;
            gi2_moderation_low rewrite;
            proxy_pass http://backend/;
        }
    }
}
EOF

"$NGINX" -p "$D/" -c "$D/backend.conf" -e "$D/backend-error.log" \
    || die "the backend nginx did not start"
"$NGINX" -t -q -p "$D/" -c "$D/nginx.conf" -e "$D/error.log" \
    > "$D/t.out" 2>&1 || { cat "$D/t.out" >&2; die "nginx -t failed"; }
LD_PRELOAD="$D/heap_probe.so${LD_PRELOAD:+ $LD_PRELOAD}" \
    GI2_HEAP_DIR="$D/heap" \
    "$NGINX" -p "$D/" -c "$D/nginx.conf" -e "$D/error.log" \
    || die "nginx did not start"
for i in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$BPORT/small/" && break
    sleep 0.1
done
MASTER=$(cat "$D/nginx.pid")

TOKEN="sk-soak-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
MARK="soakprompt$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export SOAK_TOKEN=$TOKEN SOAK_MARK=$MARK

# run_wrk SECONDS DELAY_MS : prints wrk's soak-result line; requests are
# sent for SECONDS, then wrk waits GRACE seconds for the last answers
GRACE=15
run_wrk() {
    SOAK_DELAY_MS=$2 SOAK_STOP_AT=$(($(date +%s) + $1)) \
        timeout $(($1 + GRACE + 120)) wrk -t2 -c"$CONNS" -d$(($1 + GRACE))s \
        --timeout 30s -s "$BENCH/soak.lua" "http://127.0.0.1:$PORT" \
        > "$D/wrk.out" 2>&1 || { cat "$D/wrk.out" >&2; return 1; }
    grep '^soak-result ' "$D/wrk.out" || { cat "$D/wrk.out" >&2; return 1; }
}

field() {
    sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< "$2"
}

echo "soak: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), 2 workers," \
    "$CONNS connections; capacity first (${CAP_DUR}s, no pause)"
CAP=$(run_wrk "$CAP_DUR" 0) || die "capacity run failed"
[ "$(field sent "$CAP")" = "$(field answered "$CAP")" ] \
    || die "capacity run: not every request answered: $CAP"
CAP_RPS=$(awk -v n="$(field answered "$CAP")" -v d="$CAP_DUR" \
    'BEGIN { printf "%.1f", n / d }')
[ "$(field wrong "$CAP")" = 0 ] && [ "$(field errors "$CAP")" = 0 ] \
    || die "capacity run: $CAP"
# each connection pauses so that all together send LOAD x capacity; the
# answer time comes on top, so the rate lands a little under the target
DELAY=$(awk -v c="$CONNS" -v r="$CAP_RPS" -v l="$LOAD" \
    'BEGIN { d = c * 1000 / (r * l); printf "%d", d < 1 ? 1 : d }')
echo "soak: capacity $CAP_RPS req/s; soak at $LOAD of it: a ${DELAY} ms" \
    "pause per connection, ${SOAK_DUR}s, reload every ${RELOAD}s"

sleep 2                                          # logs flushed (flush=1s)
N0=$(wc -l < "$D/audit.log")
K0=$(wc -l < "$D/kind.log")

# RSS of the master and the workers every second, with its parts from
# /proc/PID/status, and a worker's malloc in use from heap_probe.so:
# "secs pid ppid VmRSS RssAnon RssFile RssShmem heap" (kB; heap "-" for
# the master, or when not read).
# SMAPS=N (diagnosis): also a copy of each process's /proc/PID/smaps
# every N seconds, in $D/smaps/PID.SECS
mkdir "$D/smaps"
SMAPS=${SMAPS:-0}
(
    t0=$(date +%s)
    while kill -0 "$MASTER" 2> /dev/null; do
        now=$(($(date +%s) - t0))
        for s in /proc/[0-9]*/stat; do
            read -r pid comm state ppid rest 2> /dev/null < "$s" || continue
            if [ "$pid" = "$MASTER" ] || [ "$ppid" = "$MASTER" ]; then
                kb=$(awk '$1 == "VmRSS:" { r = $2 } $1 == "RssAnon:" {
                        a = $2 } $1 == "RssFile:" { f = $2 }
                        $1 == "RssShmem:" { s = $2 }
                        END { if (r != "") print r, a, f, s }' \
                    "/proc/$pid/status" 2> /dev/null) || continue
                heap=-
                if [ "$pid" != "$MASTER" ]; then
                    # SUM = U + H, or the line was read half written
                    read -r u h sum 2> /dev/null < "$D/heap/$pid" || true
                    if [[ ${u:-x}${h:-x}${sum:-x} =~ ^[0-9]+$ ]] \
                        && [ "$sum" = $((u + h)) ]; then
                        heap=$((sum / 1024))
                    fi
                    u= h= sum=
                fi
                [ -n "$kb" ] && echo "$now $pid $ppid $kb $heap"
                if [ "$SMAPS" -gt 0 ] && [ $((now % SMAPS)) = 0 ]; then
                    cat "/proc/$pid/smaps" > "$D/smaps/$pid.$now" \
                        2> /dev/null || true
                fi
            fi
        done
        sleep 1
    done
) > "$D/rss.log" &
SAMPLER=$!

# reloads; each one's time is noted, so samples of old workers (shutting
# down) are not mistaken for growth
(
    t0=$(date +%s)
    while sleep "$RELOAD"; do
        "$NGINX" -p "$D/" -c "$D/nginx.conf" -e "$D/error.log" -s reload \
            2>> "$D/reload.err" || echo "reload failed" >> "$D/reload.err"
        echo "$(($(date +%s) - t0))" >> "$D/reloads.log"
    done
) &
RELOADER=$!

RES=$(run_wrk "$SOAK_DUR" "$DELAY") || die "soak run failed"
kill "$RELOADER" 2> /dev/null || true
wait "$RELOADER" 2> /dev/null || true
RELOADER=
sleep 3                  # answers in flight finish, buffered logs flushed
kill "$SAMPLER" 2> /dev/null || true
wait "$SAMPLER" 2> /dev/null || true
SAMPLER=
stop_all                  # a graceful stop flushes what is left
sleep 1

SENT=$(field sent "$RES")
ANSWERED=$(field answered "$RES")
WRONG=$(field wrong "$RES")
ERRORS=$(field errors "$RES")
N1=$(wc -l < "$D/audit.log")
K1=$(wc -l < "$D/kind.log")
RECORDS=$((N1 - N0))
KINDREC=$((K1 - K0))
CRASHES=$(grep -c 'exited on signal' "$D/error.log" || true)
ALERTS=$(grep -cE '\[(alert|crit|emerg)\]' "$D/error.log" || true)
NRELOAD=$(wc -l < "$D/reloads.log" 2> /dev/null || echo 0)
RELOAD_ERR=$(grep -c . "$D/reload.err" 2> /dev/null || true)

# every record parses and names a decision; count what was decided
DECISIONS=$(python3 - "$D/audit.log" "$N0" << 'EOF'
import collections, json, sys
c = collections.Counter()
bad = 0
with open(sys.argv[1], encoding="utf-8") as f:
    for i, line in enumerate(f):
        if i < int(sys.argv[2]):
            continue
        try:
            r = json.loads(line)
            c[r["event"]["action"] if r["event"].get("action") else "?"] += 1
        except Exception:
            bad += 1
print("unparsable=%d %s" % (bad, " ".join(
    "%s=%d" % kv for kv in sorted(c.items()))))
EOF
) || die "cannot read the audit log"

# Memory: per worker life, from WARM seconds after its first sample to
# the next reload, the floor (least sample) of malloc in use in the first
# and in the last third of the life (see "Memory" in the header); RSS
# and its parts alongside.  The lives' table goes to $D/rss-lives.txt
# and is printed.
RSS=$(python3 - "$D/rss.log" "$D/reloads.log" "$MASTER" "$WARM" \
    "$RSS_LIMIT" "$D/rss-lives.txt" << 'EOF'
import collections, statistics, sys
rss, reloads, master, warm, limit, table = sys.argv[1:7]
warm, limit = int(warm), float(limit)
try:
    rl = sorted(int(x) for x in open(reloads))
except FileNotFoundError:
    rl = []
# samples[pid] = [(secs, VmRSS, RssAnon, RssFile, RssShmem, heap|None)]
samples = collections.defaultdict(list)
for line in open(rss):
    f = line.split()
    if len(f) != 8:
        continue
    samples[f[1]].append(tuple(int(x) for x in [f[0]] + f[3:7])
                         + (int(f[7]) if f[7] != "-" else None,))
def floor(part, i):
    return min(x[i] for x in part)
def med(part, i):
    return statistics.median(x[i] for x in part)
def thirds(part):
    k = len(part) // 3
    return part[:k], part[-k:]
worst = (-1e9, "", 0, 0)
growths, anon, vmrss, rows = [], [], [], []
fworst = sworst = -1e9
noheap = 0
for pid, s in sorted(samples.items(), key=lambda x: (x[1][0][0], x[0])):
    if pid == master:
        continue
    born = s[0][0]
    end = next((r for r in rl if r > born), None)
    live = [x for x in s if x[0] >= born + warm
            and (end is None or x[0] < end)]
    if len(live) < 6:
        continue
    first, last = thirds(live)
    va, vb = med(first, 1), med(last, 1)
    aa, ab = floor(first, 2), floor(last, 2)
    vmrss.append((vb - va) * 100.0 / va)
    anon.append((ab - aa) * 100.0 / aa)
    fworst = max(fworst, floor(last, 3) - floor(first, 3))
    sworst = max(sworst, floor(last, 4) - floor(first, 4))
    hl = [x for x in live if x[5] is not None]
    if len(hl) < 6:
        noheap += 1
        ha = hb = 0
        hg = float("nan")
    else:
        hfirst, hlast = thirds(hl)
        ha, hb = floor(hfirst, 5), floor(hlast, 5)
        hg = (hb - ha) * 100.0 / ha
        growths.append(hg)
        if hg > worst[0]:
            worst = (hg, pid, ha, hb)
    rows.append("%-6s %4d-%-4s %3d  %5d %5d %+4d %+6.2f%%  %5d %5d %+5d"
        "  %5d %5d %+4d %+6.2f%%  %5d %5d %+4d  %3d %3d %+3d  %5d" % (
        pid, live[0][0], end - 1 if end else live[-1][0], len(live),
        ha, hb, hb - ha, hg, va, vb, vb - va, aa, ab, ab - aa, anon[-1],
        floor(first, 3), floor(last, 3), floor(last, 3) - floor(first, 3),
        floor(first, 4), floor(last, 4), floor(last, 4) - floor(first, 4),
        max(x[2] for x in live) - min(x[2] for x in live)))
with open(table, "w") as t:
    t.write("worker lives (kB), first third of the life -> last third; "
            "floor = least sample; swing = RssAnon's largest - least\n")
    t.write("%-6s %-9s %3s  %-25s  %-17s  %-25s  %-16s  %-11s  %5s\n" % (
        "pid", "life (s)", "n", "malloc in use (checked)", "VmRSS (median)",
        "RssAnon (floor)", "RssFile (floor)", "RssShmem", "swing"))
    for r in rows:
        t.write(r + "\n")
# the master doubles at its first reload (two configurations for a
# moment; the C library keeps the pages): it is watched from just after
m = samples.get(master, [])
since = rl[0] + 2 if rl else warm
ml = [x for x in m if x[0] >= since]
mg = ((ml[-1][1] - ml[0][1]) * 100.0 / ml[0][1]) if len(ml) > 1 else 0.0
def mean(x):
    return statistics.mean(x) if x else 0.0
print("%d %.2f %s %d %d %.2f %d %d %.2f %s %.2f %.2f %.2f %+d %+d %d" % (
    len(growths), worst[0], worst[1] or "-", worst[2], worst[3], mg,
    ml[0][1] if ml else 0, ml[-1][1] if ml else 0, mean(growths),
    "ok" if growths and worst[0] < limit else "FAIL",
    max(vmrss) if vmrss else 0.0, max(anon) if anon else 0.0, mean(anon),
    fworst if rows else 0, sworst if rows else 0, noheap))
EOF
) || die "cannot read the RSS samples"
read -r RCHECKED RWORST RPID RFROM RTO MGROW MFROM MTO RMEAN RVERDICT \
    VWORST AWORST AMEAN FWORST SWORST NOHEAP <<< "$RSS"

# the records' decisions against the kinds wrk sent
KINDS=$(field kinds "$RES")
kind() {
    sed -n "s/.*\(^\|,\)$1=\([0-9]*\).*/\2/p" <<< "$KINDS"
}
dec() {
    sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<< " $DECISIONS"
}
WANT_ALLOW=$(($(kind allow) + $(kind exception) + $(kind stream) + $(kind big)))
WANT_REJECT=$(($(kind rule) + $(kind low) + $(kind bad)))
WANT_REWRITE=$(kind rewrite)
DEC_OK=1
[ "$(dec allow)" = "$WANT_ALLOW" ] && [ "$(dec reject)" = "$WANT_REJECT" ] \
    && [ "$(dec rewrite)" = "$WANT_REWRITE" ] || DEC_OK=0

LEAKS=$(cat "$D"/*.log | grep -c -e "$TOKEN" -e "$MARK" || true)

echo "--- soak: ${SOAK_DUR}s at $LOAD x $CAP_RPS req/s, $NRELOAD reloads" \
    "($RELOAD_ERR failed)"
echo "requests: sent $SENT, answered $ANSWERED" \
    "($(awk -v n="$ANSWERED" -v d="$SOAK_DUR" 'BEGIN { printf "%.1f", n / d }')" \
    "req/s, p99 $(field p99_ms "$RES") ms); by kind: $(field kinds "$RES")"
echo "failed requests: $((WRONG + ERRORS)) ($WRONG wrong status," \
    "$ERRORS socket errors; first: $(field first_wrong "$RES"))"
echo "worker crashes: $CRASHES; alert/crit/emerg lines: $ALERTS"
echo "audit records: $RECORDS for $SENT requests sent" \
    "($KINDREC access log lines); $DECISIONS"
echo "decisions in the records: allow $(dec allow) (want $WANT_ALLOW)," \
    "reject $(dec reject) (want $WANT_REJECT), rewrite $(dec rewrite)" \
    "(want $WANT_REWRITE)"
cat "$D/rss-lives.txt"
echo "worker memory: $RCHECKED worker lives checked after ${WARM}s of" \
    "warm-up; malloc in use (floor): worst growth $RWORST% (pid $RPID:" \
    "$RFROM -> $RTO kB), mean $RMEAN% (limit $RSS_LIMIT%); not checked:" \
    "VmRSS (median) worst $VWORST%, RssAnon (floor) worst $AWORST% and" \
    "mean $AMEAN%, RssFile (floor) $FWORST kB, RssShmem $SWORST kB;" \
    "master VmRSS $MFROM -> $MTO kB ($MGROW%) after its first reload"
echo "secrets: the bearer token and the prompt marker found in" \
    "$LEAKS log lines"

FAIL=()
[ "$CRASHES" = 0 ] || FAIL+=("$CRASHES worker crashes")
[ "$ALERTS" = 0 ] || FAIL+=("$ALERTS alert lines")
[ $((WRONG + ERRORS)) = 0 ] || FAIL+=("$((WRONG + ERRORS)) failed requests")
[ "$RECORDS" = "$SENT" ] || FAIL+=("$RECORDS audit records for $SENT sent")
[ "$ANSWERED" = "$SENT" ] || FAIL+=("$((SENT - ANSWERED)) requests unanswered")
if [ "$NOHEAP" != 0 ]; then
    FAIL+=("heap_probe.so gave no figures for $NOHEAP worker lives")
fi
if [ "$RCHECKED" = 0 ]; then
    FAIL+=("no worker life had 6 RSS samples after ${WARM}s of warm-up (RELOAD=$RELOAD is too short to check)")
elif [ "$RVERDICT" != ok ]; then
    FAIL+=("worker malloc in use growth $RWORST%")
fi
[ "$LEAKS" = 0 ] || FAIL+=("secrets in $LEAKS log lines")
[ "$RELOAD_ERR" = 0 ] || FAIL+=("$RELOAD_ERR reloads failed")
[ "$DEC_OK" = 1 ] || FAIL+=("decisions in the records do not match the kinds sent")
case $DECISIONS in unparsable=0\ *) ;; *) FAIL+=("audit: $DECISIONS");; esac
if [ ${#FAIL[@]} -gt 0 ]; then
    grep -m5 -E '\[(alert|crit|emerg)\]|exited on signal' "$D/error.log" >&2 \
        || true
    die "$(IFS=';'; echo "${FAIL[*]}")"
fi
echo "soak: ok"
