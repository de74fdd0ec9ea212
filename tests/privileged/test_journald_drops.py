"""journald's drop notices read for real (docs/detection.md, "Messages lost"): a
systemd-journald of the test's own in a private mount namespace with a low rate limit
(tests/support/journald_ns.py), a writer in a unit's cgroup logging above it, and a
forged notice sent by an unprivileged user. The reader's count per unit equals journald's
own notices, which equal the lines sent less the lines journald kept; the forgery is
ignored. (The daemon under systemd: tests/e2e/test_systemd_unit.py in the VM.)"""
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.journald_ns import JOURNALD

ROOT = Path(__file__).resolve().parents[2]
N = 500

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespace, cgroups)"),
    pytest.mark.skipif(not os.access(JOURNALD, os.X_OK), reason=f"no {JOURNALD}"),
    pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("journalctl") is None,
                       reason="needs unshare and journalctl"),
]


def test_reader_counts_exactly_what_journald_dropped_and_ignores_a_forgery():
    tag = uuid.uuid4().hex[:8]
    res = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-m",
                          "tests.support.journald_ns", tag, str(N)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    unit = got["unit"]
    assert got["forged"] == 1                     # the user's notice is in the journal...
    assert 0 < got["notices"] and got["kept"] + got["notices"] == N, got
    assert got["counted"] == {unit: got["notices"]}, got      # ...and not counted
