#!/usr/bin/env bash
# Inside the test VM, as root, from the bare box (nothing of surgewatch's runtime in it):
# `make snapshot` must install exactly the Debian packages setup/runtime.sh names plus
# what apt needs for them, remove nothing, ship no unit, and change no unit's state.
#     vagrant/check-runtime-setup.sh OUT_DIR      (run from the project directory)
# Exit 0 when all holds, 1 with each difference named, 2 when it could not check.
set -uo pipefail
OUT="${1:?usage: $0 OUT_DIR}"
mkdir -p "$OUT"
say() { printf 'runtime-check: %s\n' "$*"; }
installed() { dpkg-query -W -f='${Status} ${Package}\n' | awk '$3 == "installed" {print $4}' | sort; }
# Enablement of every unit file, and the state of every loaded service, socket and timer.
# Not compared: what comes and goes by itself (user managers with ssh logins, services a
# timer starts, bus-activated services that exit when idle).
units() {
    local by_timer
    by_timer="$(systemctl list-timers --all --no-legend --plain | awk '{print $NF}' | paste -sd'|' -)"
    systemctl list-unit-files --no-legend --plain | awk '{print "file", $1, $2}'
    systemctl list-units --all --no-legend --plain --type=service,socket,timer |
        awk -v t="^(${by_timer:-none})\$" '$1 !~ /^(user@|user-runtime-dir@|session-|systemd-(hostnamed|localed|timedated))/ && $1 !~ t {print "unit", $1, $3, $4}'
}

[ -d /run/systemd/system ] || { say "no systemd here: this check is for the VM"; exit 2; }
mapfile -t wanted < <(bash setup/runtime.sh --list .) || { say "setup/runtime.sh --list failed"; exit 2; }
[ ${#wanted[@]} -gt 0 ] || { say "setup/runtime.sh --list names nothing: the box is not bare"; exit 2; }
printf '%s\n' "${wanted[@]}" > "$OUT/runtime-wanted.txt"
apt-get update -qq || { say "apt-get update failed"; exit 2; }
apt-get -s install --no-install-recommends "${wanted[@]}" | awk '/^Inst /{print $2}' | sort > "$OUT/runtime-expected.txt"
installed > "$OUT/dpkg-before.txt"
units | sort > "$OUT/units-before.txt"

say "make snapshot (the README's first command) from the bare box"
make snapshot > "$OUT/make-snapshot.log" 2>&1
rc=$?
tail -5 "$OUT/make-snapshot.log" | sed 's/^/    /'

installed > "$OUT/dpkg-after.txt"
units | sort > "$OUT/units-after.txt"
comm -13 "$OUT/dpkg-before.txt" "$OUT/dpkg-after.txt" > "$OUT/runtime-installed.txt"
bad=0
[ $rc -eq 0 ] || { say "make snapshot exited $rc (see make-snapshot.log)"; bad=1; }
if ! diff -u "$OUT/runtime-expected.txt" "$OUT/runtime-installed.txt" > "$OUT/runtime-diff.txt"; then
    say "installed packages differ from apt's plan for ${wanted[*]} (- planned, + installed):"
    sed 's/^/    /' "$OUT/runtime-diff.txt"; bad=1
fi
removed="$(comm -23 "$OUT/dpkg-before.txt" "$OUT/dpkg-after.txt")"
[ -z "$removed" ] || { say "packages removed: $removed"; bad=1; }
while read -r p; do
    u="$(dpkg -L "$p" 2>/dev/null | grep -E '/systemd/system/[^/]+\.(service|socket|timer)$' || true)"
    [ -z "$u" ] || { say "installed package $p ships units: $u"; bad=1; }
done < "$OUT/runtime-installed.txt"
if ! diff -u "$OUT/units-before.txt" "$OUT/units-after.txt" > "$OUT/units-diff.txt"; then
    say "units changed (- before, + after):"; sed 's/^/    /' "$OUT/units-diff.txt"; bad=1
fi
say "installed $(wc -l < "$OUT/runtime-installed.txt") packages for ${wanted[*]}; $([ $bad -eq 0 ] && echo "exactly apt's plan, no unit changed" || echo FAILED)"
exit $bad
