#!/bin/sh
# The Debian packages the surgewatch package depends on, one a line, from debian/control
# (the one list): setup/runtime.sh installs them; vagrant/build-box.sh refuses a box that
# bakes one in (the VM proves the runtime set-up installs them).   setup/depends.sh [PROJECT_DIR]
set -eu
dir="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
awk '/^Package: surgewatch$/ { p = 1 }
     p && /^Depends:/ { d = 1; sub(/^Depends:/, "") }
     d && /^[A-Za-z-]+:/ && !/^Depends:/ { exit }
     d { gsub(/\([^)]*\)|\$\{[^}]*\}/, "")
         n = split($0, a, ",")
         for (i = 1; i <= n; i++) { gsub(/[ \t]/, "", a[i]); if (a[i] != "") print a[i] } }' \
    "$dir/debian/control"
