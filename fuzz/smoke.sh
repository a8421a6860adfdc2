#!/usr/bin/env bash
# Builds every fuzz target once and runs each for a short while; exits non-zero when any
# target crashes, leaks or times out. Installs cargo-fuzz when it is missing.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-15}"
target_dir="${FUZZ_TARGET_DIR:-target}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# cargo-fuzz hands rustc nightly-only flags; this lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP=1

cargo fuzz build --target-dir "$target_dir"

# What a failed run found: the panic or sanitizer message and the input's bytes, since CI's
# checkout (and so artifacts/) is thrown away after the run.
report() {
    local target="$1" log="$2" stamp="$3" input
    echo "fuzz: $target failed"
    grep -E -A2 "panicked at|ERROR: (libFuzzer|AddressSanitizer)|^SUMMARY" "$log" | head -n 20
    # Only this run's inputs: artifacts/ keeps earlier runs' too.
    find "artifacts/$target" -type f -newer "$stamp" 2>/dev/null | while read -r input; do
        echo "input $input ($(wc -c <"$input") bytes), first 512 in hex:"
        head -c 512 "$input" | od -An -tx1
    done
}

failed=()
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    touch "corpus/$target.start"
    echo "fuzz: $target for ${seconds}s"
    # -timeout: an input that takes over 10 s counts as a failure (a hang), not a slow run.
    if ! cargo fuzz run --target-dir "$target_dir" "$target" "corpus/$target" "seeds/$target" \
        -- -max_total_time="$seconds" -timeout=10 -print_final_stats=1 2>"corpus/$target.log"; then
        report "$target" "corpus/$target.log" "corpus/$target.start" >&2
        failed+=("$target")
    fi
    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|Done)' \
        "corpus/$target.log" || true
done

if ((${#failed[@]})); then
    echo "fuzz: failed: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: every target ran ${seconds}s without a crash"
