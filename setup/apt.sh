# Sourced by setup/runtime.sh and tests/setup.sh: install Debian packages only when missing,
# and never remove one (apt-get --no-remove: a package that conflicts with an installed
# one, e.g. a second syslog daemon, stops the set-up with apt's message instead).
apt_updated=0
apt_update_once() {
    [ $apt_updated -eq 1 ] && return 0
    apt-get update -qq
    apt_updated=1
}
apt_missing() {   # print the named packages that are not installed, one a line
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}
apt_install() {
    local missing
    mapfile -t missing < <(apt_missing "$@")
    [ ${#missing[@]} -eq 0 ] && return 0
    apt_update_once
    printf 'setup: installing %s\n' "${missing[*]}"
    apt-get install -y -qq --no-install-recommends --no-remove "${missing[@]}" >/dev/null
}
