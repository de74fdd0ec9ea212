"""Load and churn (docs/reliability.md): thousands of short-lived processes per second,
each writing a known number of log lines, under a real `surgewatch run`.

SURGEWATCH_CHURN_S sets the duration (20 s in make test, 60 s in make soak)."""
import os
import subprocess

import pytest

from tests.privileged.relhelp import record_figure
from tests.support.daemon import Daemon
from tests.support.procfs import open_fds, rss_kb
from tests.support.records import losses, writes_by_path
from tests.workloads.build import HERE

pytestmark = pytest.mark.privileged
LINES = 3
LINE_BYTES = len("churn line ..................\n")


@pytest.fixture(scope="module")
def churn_bin(tmp_path_factory):
    d = tmp_path_factory.mktemp("churn")
    exe = d / f"swchurn{os.getpid() % 10000}"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / "churn.c")], check=True)
    return str(exe)


def test_process_churn_counts_exact_daemon_survives_memory_returns(tmp_path, churn_bin):
    seconds = float(os.environ.get("SURGEWATCH_CHURN_S", "20"))
    rate = float(os.environ.get("SURGEWATCH_CHURN_RATE", "2000"))
    d = Daemon(tmp_path, interval=0.5, segments=True, socket=True)
    try:
        d.wait_meta()
        d.wait_stats(4)
        rss0, fds0 = rss_kb(d.pid), open_fds(d.pid)
        log = str(d.logdir / "churn.log")
        res = subprocess.run([churn_bin, log, str(rate), str(seconds), str(LINES)],
                             capture_output=True, text=True, timeout=seconds + 120, check=True)
        _, spawned, _, failed, _, took = res.stdout.split()
        spawned, failed, took = int(spawned), int(failed), float(took)
        with open(log, "rb") as f:
            on_disk = f.read().count(b"\n")
        peak = rss_kb(d.pid)
        d.wait_stats(6)                     # quiet intervals: caches expire, memory settles
        rss1, fds1 = rss_kb(d.pid), open_fds(d.pid)
        assert d.proc.poll() is None, "daemon died under churn"
    finally:
        rc = d.stop()
    assert rc == 0, d.err
    assert failed == 0
    expected = spawned * LINES
    assert on_disk == expected
    counted, nbytes = writes_by_path(d.records, log)
    loss = losses(d.records)
    record_figure("churn", seconds=seconds, target_rate=rate, spawned=spawned,
                  reached_per_s=round(spawned / took), expected_writes=expected,
                  counted=counted, **loss, rss_start_kb=rss0, rss_peak_kb=peak,
                  rss_end_kb=rss1, fds_start=fds0, fds_end=fds1)
    # exact, or short by exactly what stats reported as unattributed/lost
    assert counted <= expected
    assert expected - counted <= loss["unresolved_writes"] + loss["lost_writes"]
    assert expected - counted == 0 or loss["unresolved_writes"] + loss["lost_writes"] > 0
    assert nbytes == counted * LINE_BYTES
    assert rss1 - rss0 <= 5 * 1024, f"RSS {rss0} kB -> {rss1} kB"
    assert fds1 <= fds0 + 2
    # interval stream complete: seq has no gap
    seqs = [r["seq"] for r in d.records if r["type"] == "stats"]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
