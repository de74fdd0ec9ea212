#!/usr/bin/env bash
# One set-up for every machine surgewatch runs on: a user's host, CI and the Vagrant VM.
# Idempotent, run as root from anywhere:  vagrant/provision.sh [PROJECT_DIR]
# Re-running when everything is present takes seconds (each step checks first).
set -euo pipefail

PROJECT_DIR="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
VENV="${SURGEWATCH_VENV:-$PROJECT_DIR/.venv}"
KREL="$(uname -r)"
say() { printf 'provision: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "provision: must run as root (it installs packages and mounts tracefs); try: sudo $0" >&2
    exit 2
fi
export DEBIAN_FRONTEND=noninteractive

apt_updated=0
apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ $apt_updated -eq 0 ]; then apt-get update -qq; apt_updated=1; fi
    say "installing ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# 1. bcc from Debian (PyPI's "bcc" is an unrelated project; only the loader child imports it),
#    libbpf1 (the daemon drives maps through it), plus tools the tests use.
apt_install python3-bpfcc bpfcc-tools libbpfcc libbpf1 python3-venv python3-pip bpftool \
            make gcc libc6-dev iproute2 tcpdump

# Packages whose maintainer scripts would start a service that listens or takes over a
# host socket: a temporary policy-rc.d keeps them down, and under systemd they are
# disabled (tests start their own, on loopback or in namespaces, with temporary configs).
apt_install_stopped() {
    local units="$1"; shift
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        made_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt_install "$@"
    if [ $made_policy -eq 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
    if [ -d /run/systemd/system ] && [ -n "$units" ]; then
        # shellcheck disable=SC2086
        systemctl disable --now $units >/dev/null 2>&1 || true
    fi
}

# 1b. Debian's Prometheus server (tests/e2e), HAProxy and nginx (the incident scenarios,
#     inside network namespaces the tests create).
[ -x /usr/bin/prometheus ] || apt_install_stopped prometheus.service prometheus
if [ ! -x /usr/sbin/haproxy ] || [ ! -x /usr/sbin/nginx ]; then
    apt_install_stopped "haproxy.service nginx.service" haproxy nginx
fi

# 1c. The log channels of docs/probe-logwrites.md: rsyslog (tests run `rsyslogd -n` with
#     their own socket; the packaged one must not take /dev/log from journald), logger,
#     python3-systemd (journald's native protocol), and podman with conmon and crun and
#     busybox-static (a container image built on the spot: no registry is reachable).
if [ ! -x /usr/sbin/rsyslogd ]; then
    apt_install_stopped "rsyslog.service syslog.socket" rsyslog
fi
apt_install bsdutils python3-systemd
[ -x /usr/bin/podman ] || apt_install podman conmon crun busybox-static uidmap

# 2. Kernel headers for bcc's clang: the running kernel's own package when the distro has
#    one, else the distro's generic headers linked under /lib/modules/$KREL/.
if [ ! -e "/lib/modules/$KREL/build/include" ]; then
    if [ $apt_updated -eq 0 ]; then apt-get update -qq; apt_updated=1; fi
    if apt-cache show "linux-headers-$KREL" >/dev/null 2>&1; then
        apt_install "linux-headers-$KREL"
    else
        apt_install linux-headers-amd64
        gen="$(dpkg-query -W -f='${Depends}' linux-headers-amd64 | grep -o 'linux-headers-[^ ,]*' | head -1)"
        gen="${gen#linux-headers-}"               # e.g. 6.1.0-47-amd64
        common="/usr/src/linux-headers-${gen%-amd64}-common"
        mkdir -p "/lib/modules/$KREL"
        ln -sfn "/usr/src/linux-headers-$gen" "/lib/modules/$KREL/build"
        ln -sfn "$common" "/lib/modules/$KREL/source"
        say "no headers package for $KREL; linked generic $gen headers (struct layouts may differ; surgewatch reads them from BTF)"
    fi
fi

# 3. tracefs (bcc attaches tracepoints through it); not mounted at boot on some hosts.
if [ ! -e /sys/kernel/tracing/events ] && [ ! -e /sys/kernel/debug/tracing/events ]; then
    mount -t tracefs nodev /sys/kernel/tracing && say "mounted tracefs at /sys/kernel/tracing"
fi
if ! mountpoint -q /sys/kernel/debug 2>/dev/null; then
    mount -t debugfs nodev /sys/kernel/debug 2>/dev/null || true
fi

# 4. The venv: Debian's Python (which sees python3-bpfcc) with system site packages.
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
stamp="$VENV/.surgewatch-installed"
if [ ! -e "$stamp" ] || [ "$PROJECT_DIR/pyproject.toml" -nt "$stamp" ]; then
    say "installing surgewatch and its test extras into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$PROJECT_DIR[test]"
    touch "$stamp"
fi
"$VENV/bin/python" -c 'import bcc, collector' || { echo "provision: venv cannot import bcc/collector" >&2; exit 1; }
say "ready ($(uname -r), venv $VENV)"
