#!/usr/bin/env bash
# Applies tuning/sysctl.conf to the running kernel with `sysctl -w`, one setting at a time,
# printing each old value and the new one. A limit already higher than the file's is kept: the
# script only ever raises (tcp_tw_reuse and the port range, which are not limits, are set as
# written). Running it twice changes nothing the second time. Nothing here survives a reboot;
# tuning/README.md says how to make the settings permanent.
#
#   tuning/apply.sh [--dry-run]
#
# --dry-run prints what would change and changes nothing; it needs no root.
set -euo pipefail

usage() {
    echo "usage: $0 [--dry-run]"
}

dry_run=0
case "${1:-}" in
    "") ;;
    --dry-run) dry_run=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
esac

here="$(cd "$(dirname "$0")" && pwd)"
conf="$here/sysctl.conf"

if [[ $dry_run -eq 0 && $EUID -ne 0 ]]; then
    echo "Changing kernel settings needs root. Run it as root (sudo $0), or see what it" >&2
    echo "would change with: $0 --dry-run" >&2
    exit 1
fi

# Trims the ends and squeezes inner runs of blanks to one space (the port range has a tab).
squeeze() {
    local words
    read -r -a words <<< "$1"
    echo "${words[*]}"
}

is_integer() {
    [[ $1 =~ ^[0-9]+$ ]]
}

# The value to set: the file's, unless the setting is a limit that is already higher.
target_value() {
    local key=$1 old=$2 wanted=$3
    if [[ $key == net.ipv4.tcp_tw_reuse ]] || ! is_integer "$old" || ! is_integer "$wanted"; then
        echo "$wanted"
    elif (( old > wanted )); then
        echo "$old"
    else
        echo "$wanted"
    fi
}

changed=0
while IFS='=' read -r key value; do
    key="$(squeeze "$key")"
    [[ -z $key || $key == \#* ]] && continue
    wanted="$(squeeze "$value")"
    if ! old="$(sysctl -n "$key" 2>/dev/null)"; then
        echo "$key: not available on this kernel or in this namespace, skipped"
        continue
    fi
    old="$(squeeze "$old")"
    new="$(target_value "$key" "$old" "$wanted")"
    if [[ $old == "$new" ]]; then
        if [[ $new != "$wanted" ]]; then
            echo "$key: $old (kept: already above $wanted)"
        else
            echo "$key: $old (unchanged)"
        fi
        continue
    fi
    if [[ $dry_run -eq 1 ]]; then
        echo "$key: $old -> $new (dry run, not applied)"
    else
        sysctl -q -w "$key=$new"
        echo "$key: $old -> $new"
    fi
    changed=$((changed + 1))
done < "$conf"

echo
echo "open files (nofile) of this shell: soft $(ulimit -Sn), hard $(ulimit -Hn)."
echo "adit raises its soft limit to the hard one; raise the hard limit with tuning/limits.conf"
echo "or LimitNOFILE= in the service unit (see tuning/README.md)."
if [[ $dry_run -eq 1 ]]; then
    echo "$changed setting(s) would change."
else
    echo "$changed setting(s) changed."
fi
