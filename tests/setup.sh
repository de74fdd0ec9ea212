#!/usr/bin/env bash
# The test tools (`make test`, `make bench`), after the runtime set-up (setup/runtime.sh):
# the Debian packages of tests/packages.txt, bcc's tools for the benchmarks, and the test
# extras in the venv. Idempotent, as root:  tests/setup.sh [PROJECT_DIR]
# A server it installs is kept from starting (policy-rc.d) and its units are disabled
# again; a server that was already installed is left exactly as it was.
set -euo pipefail

PROJECT_DIR="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
VENV="${SURGEWATCH_VENV:-$PROJECT_DIR/.venv}"
[ "$(id -u)" -eq 0 ] || { echo "tests/setup.sh: must run as root (it installs packages); try: sudo $0" >&2; exit 2; }
[ -x "$VENV/bin/python" ] || { echo "tests/setup.sh: no venv at $VENV; run setup/runtime.sh (make setup) first" >&2; exit 2; }
export DEBIAN_FRONTEND=noninteractive
. "$PROJECT_DIR/setup/apt.sh"

declare -a packages=() units=()
declare -A units_of=()
while read -r pkg rest; do
    [ -z "$pkg" ] || [ "${pkg:0:1}" = "#" ] && continue
    packages+=("$pkg")
    units_of[$pkg]="$rest"
done < "$PROJECT_DIR/tests/packages.txt"
# bcc's tools (syscount for the benchmarks) need the runtime's python3-bpfcc, so they are
# not in packages.txt, which the VM's box bakes in before the runtime set-up runs.
packages+=(bpfcc-tools)

mapfile -t missing < <(apt_missing "${packages[@]}")
for p in "${missing[@]}"; do
    [ -n "${units_of[$p]:-}" ] && read -ra u <<< "${units_of[$p]}" && units+=("${u[@]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        made_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt_install "${missing[@]}"
    [ $made_policy -eq 1 ] && { rm -f /usr/sbin/policy-rc.d; trap - EXIT; }
    if [ ${#units[@]} -gt 0 ] && [ -d /run/systemd/system ]; then
        systemctl disable --now "${units[@]}" >/dev/null 2>&1 || true
    fi
fi

stamp="$VENV/.surgewatch-test"
if [ ! -e "$stamp" ] || [ "$PROJECT_DIR/pyproject.toml" -nt "$stamp" ]; then
    printf 'setup: installing the test extras into %s\n' "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$PROJECT_DIR[test]"
    touch "$stamp"
fi
