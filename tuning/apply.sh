#!/usr/bin/env bash
# Applies tuning/sysctl.conf to the running kernel and raises this shell's open-file limit.
# Each public connection, origin connection and listener takes a descriptor; the common
# default of 1024 runs out long before the edge does.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
sysctl -p "$here/sysctl.conf"
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "open files: $(ulimit -n) (this shell and what it starts)"
