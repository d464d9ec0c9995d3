#!/bin/bash
# make run / make stop: the example gateway on 127.0.0.1:8080.
set -e
top=$(cd "$(dirname "$0")/.." && pwd)
prefix=$top/build/run
nginx=${NGINX:-/usr/sbin/nginx}

stop() {
    if [ -f "$prefix/nginx.pid" ]; then
        "$nginx" -p "$prefix" -c "$prefix/nginx.conf" -s quit 2>/dev/null || true
        for _ in $(seq 50); do
            [ -f "$prefix/nginx.pid" ] || break
            sleep 0.1
        done
    fi
}

case "$1" in
stop)
    stop
    echo "gateway stopped"
    exit 0
    ;;
esac

stop
mkdir -p "$prefix"
cp "$top/examples/keywords.txt" "$prefix/keywords.txt"
# the HMAC key for the audit record's hashes: made once, kept secret
[ -s "$prefix/gi2.key" ] || (umask 077; head -c 32 /dev/urandom | base64 > "$prefix/gi2.key")
sed -e "s#@PREFIX@#$prefix#g" -e "s#@MODULE@#$top/build/ngx_http_gi2_module.so#g" \
    "$top/examples/gateway.conf.in" > "$prefix/nginx.conf"
"$nginx" -p "$prefix" -c "$prefix/nginx.conf" -t -q
"$nginx" -p "$prefix" -c "$prefix/nginx.conf"

cat <<MSG
gi2 gateway listening on http://127.0.0.1:8080 (stub image API on :8081)
config: $prefix/nginx.conf   stop: make stop
decisions: $prefix/access.log   audit records (JSON): $prefix/audit.log

  # allowed
  curl -s localhost:8080/v1/images/generations -H 'Content-Type: application/json' \\
       -d '{"model":"gpt-image-1","prompt":"a lighthouse at dawn"}'
  # rejected by a prompt rule (width and zero-width tricks do not help)
  curl -s localhost:8080/v1/images/generations -H 'Content-Type: application/json' \\
       -d '{"model":"gpt-image-1","prompt":"a ＮＵ\\u200bDE figure"}'
  # rejected: moderation=low without an exception
  curl -s localhost:8080/v1/images/generations -H 'Content-Type: application/json' \\
       -d '{"prompt":"a lighthouse","moderation":"low"}'
  # allowed with an approved exception
  curl -s localhost:8080/v1/images/generations -H 'Content-Type: application/json' \\
       -H 'X-GI2-Exception: EXC-2026-001' -d '{"prompt":"a lighthouse","moderation":"low"}'
  # rewritten to moderation=auto (see X-Stub-Received-Moderation)
  curl -si localhost:8080/rewrite/v1/images/generations -H 'Content-Type: application/json' \\
       -d '{"prompt":"a lighthouse","moderation":"low"}'
MSG
