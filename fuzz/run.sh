#!/bin/bash
# make fuzz: run each libFuzzer harness named for a number of seconds.
#
#   fuzz/run.sh SECONDS NAME...
#
# build/fuzz/NAME_fuzz runs over a work corpus build/fuzz/work-NAME (new
# inputs go there, not into the checked-in seeds of fuzz/corpus/NAME),
# with fuzz/NAME.dict when there is one.  A crash leaves its input in
# build/fuzz/crash-NAME-*; copy it to fuzz/regress/NAME/ once fixed.
# Prints executions and coverage of each; fails if any harness failed.

set -u
cd "$(dirname "$0")/.."
secs=$1
shift
out=build/fuzz
failed=()
summary=()

for name in "$@"; do
    bin=$out/${name}_fuzz
    work=$out/work-$name
    log=$out/$name.log
    mkdir -p "$work"
    dict=()
    [ -f "fuzz/$name.dict" ] && dict=(-dict="fuzz/$name.dict")
    seeds=("fuzz/corpus/$name")
    [ -d "fuzz/regress/$name" ] && seeds+=("fuzz/regress/$name")
    echo "== $name: ${secs}s (log: $log)"
    "$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=2048 -artifact_prefix="$out/crash-$name-" \
        "${dict[@]}" "$work" "${seeds[@]}" > "$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
    corp=$(grep -o 'corp: [0-9]*/[0-9]*[A-Za-z]*' "$log" | tail -1)
    line="$name: ${execs:-?} executions (${rate:-?}/s), ${cov:-no cov}, $corp"
    if [ $rc -ne 0 ]; then
        line="$line: FAILED (exit $rc)"
        failed+=("$name")
        grep -E 'ERROR|fuzz check failed|SUMMARY|runtime error' "$log" \
            | head -5
        ls "$out"/crash-"$name"-* 2>/dev/null
    fi
    echo "$line"
    summary+=("$line")
done

echo
echo "fuzz summary (${secs}s each):"
printf '  %s\n' "${summary[@]}"
[ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}"; exit 1; }
