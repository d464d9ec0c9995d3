#!/bin/bash
# Request-side throughput of ngx_gi2_module beside its peers, on one stock
# nginx (worker_processes 1), all on 127.0.0.1:
#
#   plain   proxy_pass only: the baseline every ratio is taken against
#   gi2     gi2 on, the peers' 100 prompt rules as gi2_rule, moderation=low
#           rejected without an exception
#   gi2k    the same plus gi2_keywords with 10,000 generated keywords
#   modsec  ModSecurity v3, JSON body processor, the same 100 rules (peers)
#   lua     lua-nginx, cjson + ngx.re, the same 100 rules (peers)
#
# Every location proxies /<loc>/v1/images/generations to a static 4 KB
# response; the client POSTs the peers' 1 KB body.json with wrk -t1 -c32.
# Locations are interleaved in each round; the medians are printed with
# their ratio to plain, then the worker's CPU time per request and its
# RSS. Then bench/response.sh measures the response side (1 MB and 8 MB
# image answers, plain vs gi2) on an nginx of its own.
#
#   make bench              (builds the module, installs wrk and the peers)
#   bash bench/run.sh
#
# Environment:
#   DUR=4        seconds per measurement         ROUNDS=5   rounds
#   WARMUP=1     seconds of warm-up per location (0: none)
#   LOCS="plain gi2 gi2k modsec lua"   what to measure; peers whose nginx
#                modules are missing are skipped with a note
#   PEERS=<repo>/../shared/peers       rules.txt, body.json, modsec.conf,
#                rules.lua, resp_4k.json
#   GI2_MODULE=<repo>/build/ngx_http_gi2_module.so   NGINX=/usr/sbin/nginx
#   KEEP=1       keep the temporary directory (config, logs) for a look
#   GI2_RESPONSE=on   gi2 and gi2k also inspect the answers (off: the
#                request side alone)
#   STRICT=1     exit 3 when gi2 or gi2k is below its target (or the
#                response side below one of its targets)
#   RESPONSE=0   skip the response side (bench/response.sh, run at the
#                end when gi2 is measured; RSS_DUR, RSS_ROUNDS there)
#   MODERATION=0 skip the external moderation service (bench/moderation.sh,
#                run last when gi2 is measured; MOD_DUR, MOD_CONNS,
#                MOD_DELAY there)
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
MODDIR=${MODDIR:-/usr/lib/nginx/modules}
DUR=${DUR:-4}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-1}
LOCS=${LOCS:-plain gi2 gi2k modsec lua}
# on: the 4 KB answers go through the response scanner too (the default);
# off: request screening alone
GI2_RESPONSE=${GI2_RESPONSE:-on}
URI=/v1/images/generations
CONNS=32

# ratio targets against plain; peers have none
declare -A TARGET=([gi2]=0.90 [gi2k]=0.85)
declare -A LABEL=([plain]=plain [gi2]=gi2 [gi2k]="gi2+10k keywords"
                  [modsec]=modsecurity [lua]=lua-nginx)

die() {
    echo "bench: FAIL: $*" >&2
    exit 1
}

for v in DUR ROUNDS WARMUP; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number of" \
        "seconds/rounds, not '${!v}'"
done
[ "$DUR" -ge 1 ] && [ "$ROUNDS" -ge 1 ] || die "DUR and ROUNDS must be >= 1"
for t in wrk curl python3 timeout "$NGINX"; do
    command -v "$t" > /dev/null || die "$t not found (make deps-bench)"
done
[ -d "$PEERS" ] || die "peers' workload not found at $PEERS (set PEERS=)"
PEERS=$(cd "$PEERS" && pwd)
for f in rules.txt body.json resp_4k.json modsec.conf rules.lua; do
    [ -r "$PEERS/$f" ] || die "$PEERS/$f missing"
done
BODY=$PEERS/body.json

D=$(mktemp -d /tmp/gi2-bench.XXXXXX)
chmod 755 "$D"
MASTER=

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    if [ -n "$MASTER" ]; then
        nginx_quit "$MASTER"
        wait "$MASTER" 2> /dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "bench: kept $D"
    else
        rm -rf "$D"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir "$D/tmp"
cp "$PEERS/resp_4k.json" "$PEERS/modsec.conf" "$PEERS/rules.lua" "$D/"

read -r PORT BPORT < <(free_ports 2)

# write_conf FILE LOC... : one nginx config serving the given locations
write_conf() {
    local f=$1 l gi2= lua= modsec=
    shift
    for l; do
        case $l in
        gi2|gi2k) gi2=1 ;;
        lua) lua=1 ;;
        modsec) modsec=1 ;;
        esac
    done
    {
        if [ -n "$gi2" ]; then
            echo "load_module $D/ngx_http_gi2_module.so;"
        fi
        if [ -n "$lua" ]; then
            echo "load_module $MODDIR/ndk_http_module.so;"
            echo "load_module $MODDIR/ngx_http_lua_module.so;"
        fi
        if [ -n "$modsec" ]; then
            echo "load_module $MODDIR/ngx_http_modsecurity_module.so;"
        fi
        cat << EOF
worker_processes 1;
error_log $D/error.log warn;
pid $D/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_buffer_size 64k;
    client_max_body_size 50m;
    client_body_temp_path $D/tmp/body;
    proxy_temp_path $D/tmp/proxy;
    fastcgi_temp_path $D/tmp/fastcgi;
    uwsgi_temp_path $D/tmp/uwsgi;
    scgi_temp_path $D/tmp/scgi;
EOF
        if [ -n "$lua" ]; then
            cat << EOF
    lua_package_path "$D/?.lua;;";
    init_by_lua_block {
        cjson = require "cjson.safe"
        RULES = require "rules"
    }
EOF
        fi
        cat << EOF
    upstream backend { server 127.0.0.1:$BPORT; keepalive 64; }
    server {
        listen 127.0.0.1:$BPORT;
        default_type application/json;
        root $D;
        location / { try_files /resp_4k.json =404; }
    }
    server {
        listen 127.0.0.1:$PORT;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
EOF
        for l; do
            echo "        location /$l/ {"
            case $l in
            gi2)
                echo "            gi2 on;"
                echo "            include $D/gi2_rules.conf;"
                echo "            gi2_moderation_low reject;"
                echo "            gi2_response_inspection $GI2_RESPONSE;"
                ;;
            gi2k)
                # the same rules under IDs k1000..., as IDs are unique
                # across the configuration
                echo "            gi2 on;"
                echo "            include $D/gi2k_rules.conf;"
                echo "            gi2_keywords kw10k deny bench" \
                    "$D/keywords.txt;"
                echo "            gi2_moderation_low reject;"
                echo "            gi2_response_inspection $GI2_RESPONSE;"
                ;;
            modsec)
                echo "            modsecurity on;"
                echo "            modsecurity_rules_file $D/modsec.conf;"
                ;;
            lua)
                # the peers' policy, unchanged
                cat << 'EOF'
            access_by_lua_block {
                ngx.req.read_body()
                local body = ngx.req.get_body_data()
                if not body then return ngx.exit(400) end
                local req = cjson.decode(body)
                if type(req) ~= "table" then return ngx.exit(400) end
                if req.moderation == "low"
                   and not ngx.var.http_x_gi2_exception
                then
                    return ngx.exit(400)
                end
                local p = req.prompt
                if type(p) ~= "string" then return ngx.exit(400) end
                for _, r in ipairs(RULES) do
                    if ngx.re.find(p, r[2], "ijo") then
                        return ngx.exit(400)
                    end
                end
            }
EOF
                ;;
            esac
            echo "            proxy_method GET;"
            echo "            proxy_pass http://backend/;"
            echo "        }"
        done
        echo "    }"
        echo "}"
    } > "$f"
}

# nginx_test FILE : nginx -t, its output kept in FILE.out
nginx_test() {
    timeout 30 "$NGINX" -t -q -p "$D/" -c "$1" -e "$D/error.log" \
        > "$1.out" 2>&1
}

RUN=()
for l in $LOCS; do
    case $l in
    plain) ;;
    gi2|gi2k)
        [ -f "$GI2_MODULE" ] || die "$GI2_MODULE not built (make module)," \
            "or measure the peers only: LOCS=\"plain lua modsec\""
        ;;
    modsec|lua)
        write_conf "$D/probe-$l.conf" "$l"
        if ! nginx_test "$D/probe-$l.conf"; then
            echo "bench: skipping $l: its nginx module does not load here:"
            sed 's/^/bench:   /' "$D/probe-$l.conf.out" | head -3
            continue
        fi
        ;;
    *)
        die "unknown location '$l' in LOCS (plain gi2 gi2k modsec lua)"
        ;;
    esac
    case " ${RUN[*]-} " in
    *" $l "*) ;;
    *) RUN+=("$l") ;;
    esac
done
[ ${#RUN[@]} -gt 0 ] || die "nothing to measure"
case " ${RUN[*]} " in
*" gi2 "*|*" gi2k "*)
    # a private copy: a rebuild overwriting build/*.so in place would
    # crash an nginx that has it mapped
    cp "$GI2_MODULE" "$D/ngx_http_gi2_module.so"
    MODINFO="module $GI2_MODULE ($(wc -c < "$GI2_MODULE") B,"
    MODINFO="$MODINFO built $(date -r "$GI2_MODULE" '+%F %T'))"
    ;;
esac
python3 "$BENCH/gen.py" "$PEERS" "$D" | sed 's/^/bench: /'

write_conf "$D/nginx.conf" "${RUN[@]}"
if ! nginx_test "$D/nginx.conf"; then
    cat "$D/nginx.conf.out" >&2
    die "nginx -t rejects the bench configuration ($D/nginx.conf)"
fi
: > "$D/error.log"

"$NGINX" -p "$D/" -c "$D/nginx.conf" -e "$D/error.log" \
    -g 'daemon off;' > "$D/nginx.out" 2>&1 &
MASTER=$!
for i in $(seq 50); do
    kill -0 "$MASTER" 2> /dev/null || break
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$BPORT/" && break
    sleep 0.1
done
if ! kill -0 "$MASTER" 2> /dev/null; then
    cat "$D/nginx.out" "$D/error.log" >&2
    MASTER=
    die "nginx did not start"
fi

# worker_pid : the pid of the single worker of our master
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

rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

NGXVER=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
echo "bench: $NGXVER, worker_processes 1;" \
    "wrk -t1 -c$CONNS, ${DUR}s x $ROUNDS rounds;" \
    "body $(wc -c < "$BODY") B, response $(wc -c < "$D/resp_4k.json") B"
echo "bench: locations: ${RUN[*]} (POST /<loc>$URI)"
if [ -n "${MODINFO-}" ]; then
    echo "bench: $MODINFO"
fi
echo "bench: load average $(cut -d' ' -f1-3 /proc/loadavg) before the run"

# --- sanity: the bench must measure pass-through, and the rules must bite
FAILS=0
# check LOC BODY CODE : the response must have CODE; a 200 must be the
# backend's file, a 400 from gi2 must be a rule rejection
check() {
    local loc=$1 body=$2 want=$3 code out=$D/check.out
    code=$(curl -sS -o "$out" -w '%{http_code}' --max-time 5 -X POST \
        -H 'Content-Type: application/json' --data-binary @"$body" \
        "http://127.0.0.1:$PORT/$loc$URI" 2>&1) || true
    if [ "$code" != "$want" ]; then
        echo "bench: sanity: $loc $(basename "$body"): got $code," \
            "want $want: $(head -c 200 "$out" 2> /dev/null)" >&2
        FAILS=$((FAILS + 1))
    elif [ "$want" = 200 ] && ! cmp -s "$out" "$D/resp_4k.json"; then
        echo "bench: sanity: $loc $(basename "$body"): 200 but not the" \
            "backend's response" >&2
        FAILS=$((FAILS + 1))
    elif [ "$want" = 400 ] && [ "${loc#gi2}" != "$loc" ] \
        && ! grep -q '"gi2_prompt_rejected"' "$out"; then
        echo "bench: sanity: $loc $(basename "$body"): 400 but not" \
            "gi2_prompt_rejected: $(head -c 200 "$out")" >&2
        FAILS=$((FAILS + 1))
    fi
}

has() {
    case " ${RUN[*]} " in *" $1 "*) return 0 ;; esac
    return 1
}

for l in "${RUN[@]}"; do
    check "$l" "$BODY" 200
    if [ "$l" = plain ]; then
        check "$l" "$D/body_nude.json" 200
    else
        check "$l" "$D/body_nude.json" 400
    fi
done
if has gi2k; then
    check gi2k "$D/body_kw1.json" 400
    check gi2k "$D/body_kw2.json" 400
fi
if has gi2; then
    check gi2 "$D/body_kw1.json" 200
    check gi2 "$D/body_kw2.json" 200
fi
[ "$FAILS" = 0 ] || die "$FAILS sanity check(s) failed"
msg="body.json 200 on all"
if [ "${RUN[*]}" != plain ]; then
    msg="$msg; \"nude\" 400 on"
    for l in "${RUN[@]}"; do
        [ "$l" = plain ] || msg="$msg $l"
    done
    if has plain; then
        msg="$msg, 200 on plain"
    fi
fi
if has gi2k; then
    msg="$msg; keyword '$(sed -n 1p "$D/kw_probe.txt")' and phrase"
    msg="$msg '$(sed -n 2p "$D/kw_probe.txt")' 400 on gi2k"
    if has gi2; then
        msg="$msg, 200 on gi2"
    fi
fi
echo "bench: sanity ok: $msg"

WORKER=$(worker_pid)
HZ=$(getconf CLK_TCK)
RSS0=$(rss_kb "$WORKER")
LOGOFF=$(wc -c < "$D/error.log")

# --- measurement
# worker_ticks : user + system CPU of the worker, in clock ticks
worker_ticks() {
    awk '{ print $14 + $15 }' "/proc/$WORKER/stat"
}

# wrk_run LOC SECONDS : prints "req/s worker-CPU-us-per-request"; fails on
# non-2xx responses or socket errors
wrk_run() {
    local out rps bad t0 t1 n
    t0=$(worker_ticks)
    out=$(GI2_BENCH_BODY=$BODY timeout $(($2 + 30)) wrk -t1 -c$CONNS \
        -d"$2"s --timeout 5s -s "$BENCH/post.lua" \
        "http://127.0.0.1:$PORT/$1$URI" 2>&1) || {
        echo "bench: wrk failed on $1: $out" >&2
        return 1
    }
    t1=$(worker_ticks 2> /dev/null) || {
        echo "bench: the nginx worker died during $1:" \
            "$(grep -m3 -E '\[(alert|crit|emerg)\]' "$D/error.log")" >&2
        return 1
    }
    rps=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' <<< "$out")
    n=$(awk '/ requests in / { print $1 }' <<< "$out")
    bad=$(awk '/Non-2xx or 3xx responses:/ { n += $NF }
               /Socket errors:/ { gsub(",", ""); n += $4 + $6 + $8 + $10 }
               END { print n + 0 }' <<< "$out")
    if [ -z "$rps" ] || [ "$bad" != 0 ]; then
        echo "bench: $1: $bad failed requests (non-2xx or socket" \
            "errors); not a pass-through measurement:" >&2
        echo "$out" >&2
        return 1
    fi
    awk -v r="$rps" -v t=$((t1 - t0)) -v hz="$HZ" -v n="$n" \
        'BEGIN { printf "%s %.1f\n", r, t / hz * 1e6 / n }'
}

if [ "$WARMUP" -gt 0 ]; then
    for l in "${RUN[@]}"; do
        wrk_run "$l" "$WARMUP" > /dev/null || die "warm-up failed on $l"
    done
fi

declare -A RES=() CPU=() ROUND=()
n=${#RUN[@]}
for r in $(seq "$ROUNDS"); do
    printf 'round %d/%d:' "$r" "$ROUNDS"
    # rotate the order each round so no location always runs first
    for i in $(seq 0 $((n - 1))); do
        l=${RUN[$(((i + r - 1) % n))]}
        m=$(wrk_run "$l" "$DUR") || die "measurement failed on $l"
        rps=${m% *}
        RES[$l]="${RES[$l]-} $rps"
        ROUND[$l,$r]=$rps
        CPU[$l]="${CPU[$l]-} ${m#* }"
        printf '  %s %s' "$l" "$rps"
    done
    printf '\n'
done

median() {
    tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 }
        END { if (NR % 2) print a[(NR + 1) / 2];
              else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

echo "--- medians over $ROUNDS rounds of ${DUR}s (ratio: median of the rounds' ratios)"
BELOW=0
declare -A MED=()
for l in "${RUN[@]}"; do
    MED[$l]=$(median <<< "${RES[$l]}" | awk '{ printf "%.0f", $1 }')
done
for l in "${RUN[@]}"; do
    line=$(printf '%-17s %6s req/s' "${LABEL[$l]}" "${MED[$l]}")
    if [ "$l" != plain ] && [ -n "${MED[plain]-}" ]; then
        # the ratio is the median of each round's own ratio: a machine
        # that slows down for a while slows both sides of a round
        ratio=$(for r in $(seq "$ROUNDS"); do
                    awk -v a="${ROUND[$l,$r]}" -v b="${ROUND[plain,$r]}" \
                        'BEGIN { print a / b }'
                done | median | awk '{ printf "%.2f", $1 }')
        line="$line = ${ratio}x plain"
        if [ -n "${TARGET[$l]-}" ]; then
            line="$line (target >= ${TARGET[$l]})"
            if awk -v r="$ratio" -v t="${TARGET[$l]}" \
                'BEGIN { exit !(r < t) }'; then
                line="$line BELOW TARGET"
                BELOW=1
            fi
        fi
    fi
    echo "$line"
done

# CPU time per request is less disturbed than req/s when other processes
# compete for the cores (not immune: caches are shared), so it backs up
# figures taken on a shared machine. The worker also serves the 4 KB
# backend; that share is the same on every location.
echo "--- nginx worker CPU per request (proxy + backend), medians"
for l in "${RUN[@]}"; do
    c=$(median <<< "${CPU[$l]}")
    line=$(printf '%-17s %6.1f us' "${LABEL[$l]}" "$c")
    if [ "$l" != plain ] && [ -n "${CPU[plain]-}" ]; then
        line="$line ($(median <<< "${CPU[plain]}" | awk -v c="$c" \
            '{ printf "%+.1f us, %.2fx", c - $1, c / $1 }') plain)"
    fi
    echo "$line"
done

# Busy machines show up as a wide spread between rounds; say so rather
# than let a noisy median pass for a figure.
for l in "${RUN[@]}"; do
    spread=$(tr ' ' '\n' <<< "${RES[$l]}" | grep . | sort -n | awk \
        -v m="${MED[$l]}" '{ a[NR] = $1 }
        END { if (NR > 1 && (a[NR] - a[1]) / m > 0.15)
                  printf "%d..%d", a[1], a[NR] }')
    if [ -n "$spread" ]; then
        echo "bench: warning: $l varied $spread req/s across rounds;" \
            "was the machine busy? (load average now" \
            "$(cut -d' ' -f1-3 /proc/loadavg))"
    fi
done

# --- the worker after the run
W2=$(worker_pid)
[ "$W2" = "$WORKER" ] || die "the worker was replaced during the run" \
    "(pid $WORKER -> $W2): $(grep -m3 -E '\[(alert|crit|emerg)\]' \
    "$D/error.log")"
echo "worker RSS: $(rss_kb "$WORKER") kB after the run" \
    "($RSS0 kB after start-up and the sanity checks)"

if grep -qE '\[(alert|crit|emerg)\]' "$D/error.log"; then
    grep -m5 -E '\[(alert|crit|emerg)\]' "$D/error.log" >&2
    die "alerts in nginx's error.log"
fi
nlog=$(tail -c +$((LOGOFF + 1)) "$D/error.log" | grep -cE '\[(error|warn)\]' \
    || true)
if [ "$nlog" != 0 ]; then
    echo "bench: note: $nlog error/warn lines in error.log during the run:"
    tail -c +$((LOGOFF + 1)) "$D/error.log" | grep -m3 -E '\[(error|warn)\]'
fi

# --- the response side: 1 MB and 8 MB image answers (bench/response.sh,
# its own nginx; needs the module)
if [ "${RESPONSE:-1}" != 0 ]; then
    if has gi2 || has gi2k; then
        rc=0
        bash "$BENCH/response.sh" || rc=$?
        case $rc in
        0) ;;
        3) BELOW=1 ;;
        *) die "the response-side bench failed" ;;
        esac
    else
        echo "bench: response side skipped: gi2 is not in LOCS"
    fi
fi

# --- the external moderation service: a call of 300 ms a request on one
# worker (bench/moderation.sh, its own nginx and mock; needs lua-nginx)
if [ "${MODERATION:-1}" != 0 ]; then
    if has gi2 || has gi2k; then
        rc=0
        bash "$BENCH/moderation.sh" || rc=$?
        case $rc in
        0) ;;
        3) BELOW=1 ;;
        *) die "the moderation service bench failed" ;;
        esac
    else
        echo "bench: moderation service skipped: gi2 is not in LOCS"
    fi
fi

if [ "$BELOW" = 1 ] && [ "${STRICT:-0}" = 1 ]; then
    exit 3
fi
exit 0
