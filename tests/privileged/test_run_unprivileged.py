"""`surgewatch run` started by an unprivileged user names the missing privileges and the
fix (one line, exit 2), not the run lock under /run it cannot create."""
import os
import subprocess
import sys

import pytest

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_unprivileged_run_blames_privileges_not_the_lock():
    env = {k: v for k, v in os.environ.items() if k != "SURGEWATCH_LOCK_FILE"}  # the default
    probe = subprocess.run(NOBODY + [sys.executable, "-c", "import collector"],
                           check=False, capture_output=True, text=True, env=env)
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot read this checkout: {probe.stderr.strip()[-200:]}")
    res = subprocess.run(NOBODY + [sys.executable, "-m", "collector", "run", "--no-socket",
                                   "--no-prometheus", "--no-segments", "--format", "json"],
                         check=False, capture_output=True, text=True, env=env,
                         timeout=60)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines() == [
        ("surgewatch: error: needs root or CAP_BPF+CAP_PERFMON to load BPF programs; "
         "fix: run as root (sudo surgewatch ...)")]
    assert res.stdout == ""
