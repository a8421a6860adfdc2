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

failed=()
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    echo "fuzz: $target for ${seconds}s"
    # -timeout: an input that takes over 10 s counts as a failure (a hang), not a slow run.
    if ! cargo fuzz run --target-dir "$target_dir" "$target" "corpus/$target" "seeds/$target" \
        -- -max_total_time="$seconds" -timeout=10 -print_final_stats=1 2>"corpus/$target.log"; then
        tail -n 40 "corpus/$target.log" >&2
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
