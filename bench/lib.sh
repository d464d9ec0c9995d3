#!/bin/bash
# Shell helpers shared by the bench scripts (sourced, not run).

# free_ports N : N TCP ports on 127.0.0.1 that are free now, on one line
free_ports() {
    python3 - "$1" << 'PYEOF'
import socket, sys
s = [socket.socket() for _ in range(int(sys.argv[1]))]
for x in s:
    x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))
PYEOF
}

# nginx_quit PID : a graceful stop (workers finish, logs are flushed),
# then TERM after 10 s; nothing when PID is empty or gone
nginx_quit() {
    local i
    [ -n "$1" ] && kill -0 "$1" 2> /dev/null || return 0
    kill -QUIT "$1" 2> /dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$1" 2> /dev/null || return 0
        sleep 0.1
    done
    kill -TERM "$1" 2> /dev/null || true
}
