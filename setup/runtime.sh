#!/usr/bin/env bash
# What surgewatch needs to run, and nothing else (`make setup`; so `make snapshot`,
# `make doctor`, `make install`). Idempotent, as root:  setup/runtime.sh [PROJECT_DIR]
#   --list   print the Debian packages this host still lacks, change nothing else
#            (the VM's check compares them with what a run really installed)
# It installs what the Debian package depends on (Debian's bcc, libbpf1, the Python
# libraries), kernel headers for bcc's clang, a venv of surgewatch itself; it mounts tracefs. It never installs a server and never
# starts, stops, enables or disables a unit. Test tools: tests/setup.sh (`make test`).
set -euo pipefail

list_only=0
[ "${1:-}" = --list ] && { list_only=1; shift; }
PROJECT_DIR="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
VENV="${SURGEWATCH_VENV:-$PROJECT_DIR/.venv}"
KREL="$(uname -r)"
ARCH="$(dpkg --print-architecture)"
say() { printf 'setup: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: must run as root (it installs packages and mounts tracefs); try: sudo $0" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive
. "$PROJECT_DIR/setup/apt.sh"

# What the Debian package depends on (debian/control, the one list): bcc from Debian (PyPI's
# "bcc" is an unrelated project; only the loader child imports it), libbpf1 (the daemon
# drives maps through it), the Python libraries; here also Debian's Python venv module.
mapfile -t packages < <(sh "$PROJECT_DIR/setup/depends.sh" "$PROJECT_DIR")
[ ${#packages[@]} -gt 0 ] || { echo "setup: no Depends: in $PROJECT_DIR/debian/control" >&2; exit 1; }
packages+=(python3-venv)

# Kernel headers for bcc's clang: the running kernel's own package when the distro has one,
# else the distro's generic headers, linked under /lib/modules/$KREL/ below.
headers=""
if [ ! -e "/lib/modules/$KREL/build/include" ]; then
    apt_update_once
    if apt-cache show "linux-headers-$KREL" >/dev/null 2>&1; then
        headers="linux-headers-$KREL"
    else
        headers="linux-headers-$ARCH"
    fi
    packages+=("$headers")
fi

if [ $list_only -eq 1 ]; then
    apt_missing "${packages[@]}"
    exit 0
fi
apt_install "${packages[@]}"

if [ "$headers" = "linux-headers-$ARCH" ]; then
    gen="$(dpkg-query -W -f='${Depends}' "$headers" | grep -o 'linux-headers-[^ ,]*' | head -1)"
    gen="${gen#linux-headers-}"               # e.g. 6.1.0-47-amd64
    mkdir -p "/lib/modules/$KREL"
    ln -sfn "/usr/src/linux-headers-$gen" "/lib/modules/$KREL/build"
    ln -sfn "/usr/src/linux-headers-${gen%-"$ARCH"}-common" "/lib/modules/$KREL/source"
    say "no headers package for $KREL; linked generic $gen headers (struct layouts may differ; surgewatch reads them from BTF)"
fi

# tracefs (bcc attaches tracepoints through it); not mounted at boot on some hosts.
if [ ! -e /sys/kernel/tracing/events ] && [ ! -e /sys/kernel/debug/tracing/events ]; then
    mount -t tracefs nodev /sys/kernel/tracing && say "mounted tracefs at /sys/kernel/tracing"
fi
if ! mountpoint -q /sys/kernel/debug 2>/dev/null; then
    mount -t debugfs nodev /sys/kernel/debug 2>/dev/null || true
fi

# The venv: Debian's Python (which sees python3-bpfcc) with system site packages.
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
stamp="$VENV/.surgewatch-runtime"
if [ ! -e "$stamp" ] || [ "$PROJECT_DIR/pyproject.toml" -nt "$stamp" ]; then
    # its dependencies are Debian's (above), seen through --system-site-packages
    say "installing surgewatch into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$PROJECT_DIR"
    touch "$stamp"
fi
"$VENV/bin/python" -c 'import bcc, collector' || { echo "setup: the venv cannot import bcc or collector; remove $VENV and run make setup again" >&2; exit 1; }
say "ready ($KREL, venv $VENV)"
