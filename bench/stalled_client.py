#!/usr/bin/env python3
"""A client that stalls: the proxy must park the answer in a temp file.

Usage: stalled_client.py PORT PATH BODY_FILE OUT_FILE [SECONDS]

POSTs BODY_FILE (application/json) to 127.0.0.1:PORT PATH over a socket
with a 4 KB receive buffer, reads nothing for SECONDS (default 1), then
reads the whole answer and writes its body to OUT_FILE. Meanwhile a fast
upstream fills nginx's proxy_buffers and the rest of the answer goes to a
temporary file (nginx logs "an upstream response is buffered to a
temporary file" at warn), so the body filters see file buffers. Prints
the status line and the body's length.
"""

import socket
import sys
import time


def main():
    port, path, body, out = (int(sys.argv[1]), sys.argv[2],
                             open(sys.argv[3], "rb").read(), sys.argv[4])
    pause = float(sys.argv[5]) if len(sys.argv) > 5 else 1.0
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(60)
    s.connect(("127.0.0.1", port))
    s.sendall(b"POST %s HTTP/1.1\r\nHost: localhost\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n"
              b"Connection: close\r\n\r\n" % (path.encode(), len(body))
              + body)
    time.sleep(pause)
    data = []
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        data.append(b)
    head, _, resp = b"".join(data).partition(b"\r\n\r\n")
    if b"\r\ntransfer-encoding: chunked" in head.lower():
        sys.exit("stalled_client.py: a chunked answer; expected a length")
    with open(out, "wb") as f:
        f.write(resp)
    print(head.split(b"\r\n")[0].decode(), len(resp))


main()
