#!/bin/bash
# gi2-check's throughput: a million prompts through the bench's rule set
# (the peers' 100 rules as gi2_rule, and bench/gen.py's 10,000 keywords
# as one gi2_keywords list), read as lines of text (-f) and as JSON
# request bodies (-j), reported as prompts per second and MB/s.
#
# The prompts: 100,000 generated ones (fixed seed, 8 to 40 words, about
# one in twenty with a rule's word, one in twenty with a keyword), fed ten
# times over standard input; the peers' 1 KB bench prompt, 100,000 times.
#
#   make bench-check        (also the last step of make bench)
#   bash bench/check.sh
#
# Environment: N=1000000 prompts a measurement; CHECK=<repo>/build/gi2-check;
# PEERS=<repo>/../shared/peers.  Exit status: 0 done, 1 failure.

set -eu -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CHECK=${CHECK:-$ROOT/build/gi2-check}
PEERS=${PEERS:-$ROOT/../shared/peers}
N=${N:-1000000}

die() {
    echo "bench/check: FAIL: $*" >&2
    exit 1
}

[ -x "$CHECK" ] || die "$CHECK not built (make gi2-check)"
command -v python3 > /dev/null || die "python3 not found (make deps-bench)"
[ -r "$PEERS/rules.txt" ] || die "peers' workload not found at $PEERS"
[[ $N =~ ^[0-9]+$ ]] && [ "$N" -ge 100000 ] \
    || die "N must be a whole number >= 100000"

D=$(mktemp -d /tmp/gi2-check-bench.XXXXXX)
trap 'rm -rf "$D"' EXIT

python3 "$ROOT/bench/gen.py" "$PEERS" "$D" > /dev/null

cat > "$D/nginx.conf" << 'EOF'
events {}
http {
    include gi2_rules.conf;
    gi2_keywords kw10k deny bench keywords.txt;
}
EOF

python3 - "$D" "$PEERS" << 'EOF'
import json, random, sys

d, peers = sys.argv[1], sys.argv[2]
rng = random.Random(20240503)
words = ("a the of with on in at by lighthouse harbour dawn storm cat dog "
         "portrait oil painting watercolor city night neon forest river "
         "mountain castle robot astronaut garden market street children "
         "festival lantern bridge train station winter summer ocean boat "
         "sunset cinematic photo realistic detailed soft light wide angle "
         "golden hour fog rain snow desert tower library kitchen").split()
rules = ["nude", "gore", "beheading"]
kws = open(d + "/kw_probe.txt").read().split("\n")[:2]
with open(d + "/prompts.txt", "w") as t, open(d + "/bodies.jsonl", "w") as j:
    for i in range(100000):
        p = [rng.choice(words) for _ in range(rng.randint(8, 40))]
        r = rng.random()
        if r < 0.05:
            p.insert(rng.randrange(len(p)), rng.choice(rules))
        elif r < 0.10:
            p.insert(rng.randrange(len(p)), rng.choice(kws))
        s = " ".join(p)
        t.write(s + "\n")
        j.write(json.dumps({"model": "gpt-image-1", "prompt": s,
                            "size": "1024x1024", "n": 1}) + "\n")
body = json.load(open(peers + "/body.json"))
with open(d + "/long.txt", "w") as t:
    for i in range(100000):
        t.write(" ".join(body["prompt"].split()) + "\n")
EOF

now() {
    date +%s.%N
}

# measure NAME OPTION FILE: N prompts of FILE (repeated) through stdin
measure() {
    local name=$1 opt=$2 file=$3 lines reps t0 t1 rc bytes out
    lines=$(wc -l < "$file")
    reps=$(( (N + lines - 1) / lines ))
    bytes=$(( $(wc -c < "$file") * reps ))
    t0=$(now)
    rc=0
    out=$(for _ in $(seq "$reps"); do cat "$file"; done \
          | "$CHECK" -c "$D/nginx.conf" -q --summary "$opt" - 2>&1) || rc=$?
    t1=$(now)
    [ "$rc" -le 1 ] || die "$name: gi2-check failed ($rc): $out"
    [[ $out =~ gi2-check:\ ([0-9]+)\ prompts ]] \
        || die "$name: no summary: $out"
    [ "${BASH_REMATCH[1]}" -eq $((lines * reps)) ] \
        || die "$name: ${BASH_REMATCH[1]} prompts read, not $((lines * reps))"
    python3 -c "
import sys
n, b, t0, t1 = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), \
    float(sys.argv[4])
s = t1 - t0
print('%-34s %9d prompts %7.2f s %10.0f prompts/s %7.1f MB/s'
      % (sys.argv[5], n, s, n / s, b / s / 1e6))
" "$((lines * reps))" "$bytes" "$t0" "$t1" "$name"
    echo "    ${out#gi2-check: }"
}

echo "gi2-check: 100 rules + 10,000 keywords ($(nproc) CPUs, one process)"
measure "prompts, one a line (-f)" -f "$D/prompts.txt"
measure "request bodies, JSON lines (-j)" -j "$D/bodies.jsonl"
measure "1 KB bench prompts (-f)" -f "$D/long.txt"
