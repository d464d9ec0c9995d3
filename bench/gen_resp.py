#!/usr/bin/env python3
"""Generate the response-side bench's upstream answers.

Usage: gen_resp.py OUT_DIR NAME:BYTES...

For each NAME:BYTES writes OUT_DIR/NAME.json, an images API answer of
about BYTES bytes in total,

  {"created":...,"data":[{"b64_json":"<base64 PNG>","revised_prompt":...}],
   "background":"opaque","output_format":"png","quality":"high",
   "size":"1024x1024","usage":{...}}

whose PNG is real-shaped: the signature, an IHDR (1024x1024 RGBA, 8 bits),
one IDAT of random bytes (fixed seed) filling the size, and IEND, every
chunk with its CRC. On stdout, one line per file:

  NAME FILE_BYTES PNG_BYTES SHA256_OF_THE_PNG
"""

import base64
import hashlib
import json
import os
import random
import struct
import sys
import zlib

SEED = 20240502


def chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))


def png(nbytes, rnd):
    head = b"\x89PNG\r\n\x1a\n" + chunk(
        b"IHDR", struct.pack(">IIBBBBB", 1024, 1024, 8, 6, 0, 0, 0))
    tail = chunk(b"IEND", b"")
    idat = nbytes - len(head) - len(tail) - 12
    return head + chunk(b"IDAT", rnd.randbytes(idat)) + tail


def answer(b64):
    return json.dumps({
        "created": 1745312043,
        "data": [{
            "b64_json": b64,
            "revised_prompt": "A modern minimalist office workspace with "
                              "natural lighting, a wooden desk and plants",
        }],
        "background": "opaque",
        "output_format": "png",
        "quality": "high",
        "size": "1024x1024",
        "usage": {
            "input_tokens": 50,
            "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
            "output_tokens": 4160,
            "output_tokens_details": {"text_tokens": 0,
                                      "image_tokens": 4160},
            "total_tokens": 4210,
        },
    }, separators=(", ", ": ")).encode()


def main():
    if len(sys.argv) < 3:
        sys.stderr.write(__doc__)
        sys.exit(2)
    out = sys.argv[1]
    rnd = random.Random(SEED)
    for arg in sys.argv[2:]:
        name, size = arg.split(":")
        size = int(size)
        overhead = len(answer(""))
        # base64 is 4 bytes for 3: the PNG that brings the file to ~size
        p = png((size - overhead) // 4 * 3, rnd)
        body = answer(base64.b64encode(p).decode())
        with open(os.path.join(out, name + ".json"), "wb") as f:
            f.write(body)
        print(name, len(body), len(p), hashlib.sha256(p).hexdigest())


main()
