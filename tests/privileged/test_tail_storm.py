"""`surgewatch tail` in a terminal under a real reset storm (issue 25): the daemon records
a storm of 2,000 resets/s for 4 s (tests/workloads/resetstorm) in segments; `tail` of
them, its stdout a pseudo-terminal, folds each interval's resets into one line, so the
storm's alert line is still within the last 20 lines when the storm ends; with -v (every
reset) it has scrolled far away. The fold lines account for every reset record."""
import os
import pty
import re
import subprocess
import threading
import uuid

import pytest

from collector.records.segments import read_segments
from tests.owncgroup import unit_cgroup
from tests.support.daemon import SURGEWATCH, Daemon
from tests.workloads.build import build

pytestmark = pytest.mark.privileged

FOLD = re.compile(r" resets (\S+)  (\d+)(?: of \d+)?(?: in [0-9.]+s)? \(sent (\d+), "
                  r"received (\d+)\)")


def tail_in_a_terminal(*args):
    """The lines `surgewatch tail ARGS` writes to a pseudo-terminal."""
    master, slave = pty.openpty()
    out = bytearray()

    def drain():
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:            # EIO: the child closed its side
                return
            if not chunk:
                return
            out.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.run([SURGEWATCH, "tail", *args], stdout=slave, stderr=subprocess.PIPE,
                          env=dict(os.environ, NO_COLOR="1"), timeout=300)
    os.close(slave)
    reader.join(timeout=60)
    os.close(master)
    assert proc.returncode == 0, proc.stderr
    return out.decode().replace("\r\n", "\n").splitlines()


def test_the_storms_alert_stays_in_view_with_folded_resets(tmp_path):
    storm = build("resetstorm", tmp_path)
    # the detector judges a new service once its own warm-up is over (docs/detection.md)
    d = Daemon(tmp_path, interval=0.5, stdout="json", segments=True, resets=True,
               config_extra="\n[alerts]\nwarmup = 4\n")
    name = f"swstorm{uuid.uuid4().hex[:6]}"
    try:
        d.wait_meta()                                # the probes are attached
        d.wait_stats(n=5)
        with unit_cgroup(name) as cg:
            made = subprocess.run([storm, "2000", "4"], capture_output=True, text=True,
                                  preexec_fn=cg.enter, check=True, timeout=120)
            assert int(made.stdout.strip()) > 0
            d.wait_stats(n=3)                        # the storm's last intervals drained
    finally:
        d.stop()
    service = f"{name}.service"
    recs = [r for r in d.records if r.get("service") == service]
    assert recs == [r for r in read_segments(d.segdir) if r.get("service") == service]
    resets = [r for r in recs if r["type"] == "reset"]
    alerts = [r for r in recs if r["type"] == "alert" and r["state"] == "open"]
    assert resets and alerts, [r["type"] for r in recs]

    lines = tail_in_a_terminal(str(d.segdir), "-s", service)
    folds = [m for m in map(FOLD.search, lines) if m]
    assert all(m.group(1) == service for m in folds)
    # one fold line per interval with more than one reset record, which accounts for them
    per_seq = {}
    for r in resets:
        per_seq[r["seq"]] = per_seq.get(r["seq"], 0) + 1
    assert len(folds) == sum(1 for n in per_seq.values() if n > 1)
    assert sum(int(m.group(2)) for m in folds) == sum(n for n in per_seq.values() if n > 1)
    assert sum(int(m.group(3)) + int(m.group(4)) for m in folds) == \
        sum(int(m.group(2)) for m in folds)
    last_alert = max(i for i, line in enumerate(lines) if " ALERT  " in line)
    assert last_alert >= len(lines) - 20, "\n".join(lines[-25:])

    verbose = tail_in_a_terminal(str(d.segdir), "-s", service, "-v")
    assert sum(" reset  " in line for line in verbose) == len(resets)
    first_alert = min(i for i, line in enumerate(verbose) if " ALERT  " in line)
    assert first_alert < len(verbose) - 20
