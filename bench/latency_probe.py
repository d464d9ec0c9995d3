#!/usr/bin/env python3
"""GETs a URL every INTERVAL seconds for DURATION seconds over one
keep-alive connection and prints how many were made, how many failed, and
the p50, p99 and max latency in milliseconds (a request that fails counts
as failed, not as a latency).

    latency_probe.py URL DURATION [INTERVAL]
"""

import http.client
import sys
import time
import urllib.parse


def main():
    url = urllib.parse.urlsplit(sys.argv[1])
    duration = float(sys.argv[2])
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.005
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    path = url.path or "/"
    lat, failed = [], 0
    end = time.monotonic() + duration
    nxt = time.monotonic()
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                failed += 1
            else:
                lat.append((time.monotonic() - t0) * 1000)
        except (OSError, http.client.HTTPException):
            failed += 1
            conn.close()
            conn = http.client.HTTPConnection(url.hostname, url.port,
                                              timeout=10)
        nxt += interval
        pause = nxt - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    if not lat:
        print("count 0 failed %d" % failed)
        return 1
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print("count %d failed %d p50 %.2f p99 %.2f max %.2f"
          % (len(lat), failed, p(0.50), p(0.99), lat[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
