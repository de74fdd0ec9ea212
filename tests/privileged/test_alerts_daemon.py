"""A real log flood under `surgewatch run`: the alert opens, then closes (docs/detection.md)."""
import subprocess
import sys
import textwrap

import pytest

from tests.support.daemon import SURGEWATCH, Daemon

pytestmark = pytest.mark.privileged

# phases of (seconds, lines/s): quiet baseline, flood, quiet again
WRITER = textwrap.dedent("""
    import os, sys, time
    path = sys.argv[1]
    phases = [(float(d), float(r)) for d, r in (p.split(":") for p in sys.argv[2:])]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for duration, rate in phases:
        start = time.monotonic()
        n = 0
        while True:
            due = start + n / rate
            if due - start >= duration:
                break
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            os.write(fd, b"flood test line\\n")
            n += 1
    os.close(fd)
""")


def _run_flags():
    """Outputs other than stdout off (flags only where this version has them)."""
    help_text = subprocess.run([SURGEWATCH, "run", "--help"], capture_output=True,
                               text=True).stdout
    flags = ["--no-segments"]
    flags += [f for f in ("--no-socket", "--no-prometheus", "--no-resets") if f in help_text]
    return flags


def test_real_flood_opens_and_closes_an_alert(tmp_path):
    log = tmp_path / "flood.log"
    # an empty config file: the settings are the flags' (and the defaults)
    d = Daemon(tmp_path, config_text="", extra=("--interval", "0.1", "--format", "json",
                                                 "--log-glob", "flood.log", *_run_flags()))
    proc = d.proc
    try:
        first = d.next(timeout=300)               # meta: the probes are attached
        assert first, d.err
        writer = subprocess.run([sys.executable, "-c", WRITER, str(log),
                                 "5:10", "1.5:3000", "2.5:10"], timeout=60)
        assert writer.returncode == 0
        d.stop()
        err = d.err
    finally:
        d.kill()
    assert proc.returncode == 0, err
    records = d.records[1:]                       # after the meta record
    mine = {r["service"] for r in records if r["type"] == "rate"
            for p in r["paths"] if p["path"] == str(log)}
    assert len(mine) == 1, mine
    service = mine.pop()
    alerts = [r for r in records if r["type"] == "alert" and r["service"] == service
              and r["signal"] == "log_writes_per_s"]
    states = [a["state"] for a in alerts]
    assert states == ["open", "close"], (alerts, err)
    opened, closed = alerts
    assert opened["top"]["paths"][0]["path"] == str(log)
    assert opened["rate"] > 1000 and opened["threshold"] >= 100
    if opened["reason"] == "above_baseline":
        assert opened["baseline"] < 100 and opened["ratio"] > 10
    assert closed["close_reason"] == "recovered" and closed["peak"] > 2000
    assert 1.0 <= closed["duration_s"] <= 3.5
    # every interval's records stay ahead of its stats record
    seq_of_stats = [r["seq"] for r in records if r["type"] == "stats"]
    assert opened["seq"] in seq_of_stats and closed["seq"] > opened["seq"]
    # and the daemon's log says so
    assert f"alert open: {service} log writes" in err, err
    assert f"alert closed (recovered): {service} log writes" in err, err
