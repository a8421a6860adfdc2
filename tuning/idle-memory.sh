#!/usr/bin/env bash
# Prints the idle resident size of an edge and a connector (two workers each) and what each
# idle keep-alive client connection adds to the edge, measured with 10,000 of them on
# loopback. Arguments go to the example, e.g. --connections 2000 --workers 1.
# See examples/idle_memory.rs for how it measures.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin adit --example idle_memory
exec target/release/examples/idle_memory "$@"
