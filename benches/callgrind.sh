#!/usr/bin/env bash
# Instructions per iteration of the per-request path without IO (request head parse, tunnel
# request frame encode, both together, one small GET's QUIC exchange between edge and
# connector, and the response head from origin to client), counted by callgrind. Unlike
# wall time these counts do not move with the load on the machine, so a regression shows as
# a plain difference between two commits. See benches/instructions.rs for what each case
# runs.
#
# Usage: benches/callgrind.sh [CASE...]
#   (cases: head_parse frame_encode request_path quic_exchange response_path)
# ITERATIONS (default 10000) sets how many times each case runs under valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."

iterations=${ITERATIONS:-10000}
cases=("$@")
if [ ${#cases[@]} -eq 0 ]; then
    cases=(head_parse frame_encode request_path quic_exchange response_path)
fi

# The bench binary, built with the bench profile (optimized, with symbols). Cargo builds the
# adit binary alongside and may report it last, so pick the bench's own artifact.
exe=$(cargo bench --bench instructions --no-run --message-format=json 2>/dev/null |
    grep '"name":"instructions"' |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
if [ -z "$exe" ]; then
    echo "could not build the instructions bench" >&2
    exit 1
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for case in "${cases[@]}"; do
    # Collect only inside measure_CASE, so start-up and the allocator's first touches
    # are not counted.
    valgrind --tool=callgrind --callgrind-out-file="$out/$case.out" \
        --toggle-collect="*measure_${case}*" "$exe" "$case" "$iterations" \
        >"$out/$case.log" 2>&1 || { cat "$out/$case.log" >&2; exit 1; }
    total=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$out/$case.out")
    printf '%-14s %8d instructions/iteration (%d in %d iterations)\n' \
        "$case" $((total / iterations)) "$total" "$iterations"
done
