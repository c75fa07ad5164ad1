#!/usr/bin/env bash
# Runs `systemd-analyze verify` on systemd/edgeplane.service (or the unit
# given) and fails on any complaint except one: on a machine where edgeplane
# is not installed, verify reports that ExecStart's /usr/bin/edgeplane does
# not exist. That exact line, and only while the file is really absent, is
# accepted; everything else verify prints fails the check.
set -uo pipefail
cd "$(dirname "$0")/.."
unit=${1:-systemd/edgeplane.service}
name=$(basename "$unit")
command -v systemd-analyze >/dev/null ||
    { echo "verify-unit.sh: systemd-analyze missing (apt-get install systemd)" >&2; exit 2; }

out=$(systemd-analyze verify "$unit" 2>&1)
rc=$?
expected="$name: Command /usr/bin/edgeplane is not executable: No such file or directory"
rest=$(printf '%s\n' "$out" | grep -vxF "$expected" | grep -v '^$' || true)
if [[ -n $rest ]]; then
    printf 'verify-unit.sh: systemd-analyze verify %s:\n%s\n' "$unit" "$out" >&2
    exit 1
fi
if ((rc != 0)) && [[ -e /usr/bin/edgeplane || $out != "$expected" ]]; then
    printf 'verify-unit.sh: systemd-analyze verify %s exited %d:\n%s\n' "$unit" "$rc" "$out" >&2
    exit 1
fi
if [[ -n $out ]]; then
    echo "verify-unit.sh: $unit ok (only: /usr/bin/edgeplane is not installed on this machine)"
else
    echo "verify-unit.sh: $unit ok"
fi
