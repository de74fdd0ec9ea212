"""The daemon run by systemd in the VM (tests/e2e/test_systemd_unit.py, test_deb_package.py):
commands, its journal, its records in the state directory, its /metrics."""
import os
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.records.segments import read_segments
from tests.owncgroup import TIME_SCALE

UNIT = "surgewatch.service"
STATE_DIR = "/var/lib/surgewatch"              # the unit's StateDirectory: the segments
METRICS = "http://127.0.0.1:9477"              # the default outputs.prometheus.listen

# the tests that install and start the unit: in the Vagrant VM (make vm-test) only
UNDER_SYSTEMD_AS_ROOT = [
    pytest.mark.skipif(not os.path.isdir("/run/systemd/system"),
                       reason="systemd is not PID 1 here (no /run/systemd/system): this test "
                              "runs in the Vagrant VM (make vm-test)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: run `make test` as root"),
]


def sh(*cmd, check=True, timeout=120, env=None):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                         env=env)
    if check and res.returncode != 0:
        pytest.fail(f"{' '.join(cmd)}: exit {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


def unit_log(since):
    return sh("journalctl", "-u", UNIT, "--since", since, "-o", "cat", "--no-pager").stdout


def wait_for(what, get, want, timeout):
    end = time.monotonic() + timeout * TIME_SCALE
    got = get()
    while got != want and time.monotonic() < end:
        time.sleep(0.5)
        got = get()
    assert got == want, f"timed out waiting for {what}: {got}, want {want}"


def records_since(start_ts):
    return [r for r in read_segments(STATE_DIR, newer_than=start_ts - 1)
            if r.get("ts", 0) >= start_ts - 1]


def this_run(start_ts):
    """This daemon's records: from the last meta record written since start_ts on (a
    start always begins a new segment with its meta)."""
    recs = records_since(start_ts)
    metas = [i for i, r in enumerate(recs) if r["type"] == "meta"]
    return recs[metas[-1]:] if metas else []


def totals(recs, service, field):
    return sum(int(r.get(field) or 0) for r in recs
               if r["type"] == "rate" and r["service"] == service)


def metric(text, name, **labels):
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None
