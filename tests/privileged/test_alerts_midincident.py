"""A daemon started in the middle of an incident (docs/detection.md, "A start in the
middle of an incident"): a writer already flooding a log when `surgewatch run` starts is
over the host's limit (a [capacity] glob) and alerts within a few intervals, instead of
being learnt as its normal during the detector's warm-up."""
import json
import subprocess
import sys
import time

import pytest

from tests.support.daemon import Daemon
from tests.support.writers import PHASED_WRITER

pytestmark = pytest.mark.privileged

INTERVAL = 0.2
RATE, CAPACITY = 2000, 500       # lines/s written; lines/s the [capacity] glob lets through
OPEN_WITHIN = 3                  # intervals from the writer's first counted interval


def test_a_flood_already_running_at_start_alerts_above_host_limit(tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    log = logdir / "flood.log"
    glob = str(logdir / "flood*.log")
    # the incident first: the writer floods before the daemon exists
    writer = subprocess.Popen([sys.executable, "-c", PHASED_WRITER, str(log),
                               "mid-incident flood line", f"120:{RATE}"],
                              stdout=subprocess.DEVNULL)
    d = None
    try:
        deadline = time.monotonic() + 10
        while (not log.exists() or log.stat().st_size == 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.exists() and log.stat().st_size > 0, "the writer did not start"
        d = Daemon(tmp_path, interval=INTERVAL, logdir=logdir, resets=False,
                   config_extra=f"[capacity]\n{json.dumps(glob)} = {CAPACITY}\n")
        d.wait_meta(timeout=300)
        opened, _ = d.wait_for(lambda r: r["type"] == "alert" and r["state"] == "open"
                               and r["signal"] == "log_writes_per_s", timeout=60)
        assert writer.poll() is None, "the flood ended before the alert: not mid-incident"
        assert d.stop() == 0, d.err
        err = d.err
    finally:
        writer.kill()
        writer.wait()
        if d is not None:
            d.kill()
    rates = [r for r in d.records if r["type"] == "rate"
             and any(p["path"] == str(log) for p in r["paths"])]
    assert rates, d.records[:5]
    service = rates[0]["service"]
    first = rates[0]["seq"]
    # flooding from the daemon's first interval on: it never had a quiet one to learn
    assert first <= 1 and rates[0]["log_writes_per_s"] > CAPACITY, rates[0]
    assert opened["service"] == service, (opened, service)
    assert opened["reason"] == "above_host_limit", opened
    assert first < opened["seq"] <= first + OPEN_WITHIN, (first, opened["seq"])
    assert opened["rate"] > 2 * CAPACITY and opened["threshold"] == float(CAPACITY)
    assert opened["baseline"] is None and opened["v"] == "1.12"
    assert opened["limit"] == {"limit": "capacity", "key": f"capacity:{glob}", "glob": glob,
                               "capacity": float(CAPACITY), "allowed_per_s": float(CAPACITY)}
    assert opened["top"]["paths"][0]["path"] == str(log)
    # the loss-risk alert of the same limit, and the daemon's log line
    assert any(r["type"] == "alert" and r["signal"] == "log_loss_risk"
               and r["service"] == service for r in d.records)
    assert (f"alert open: {service} log writes " in err
            and f"(over capacity {glob} {CAPACITY} lines/s; no baseline of its own yet)"
            in err), err
    # nothing of the flood was learnt: no interval of it is below the limit
    assert all(r["log_writes_per_s"] > CAPACITY for r in rates[1:-1]), \
        [r["log_writes_per_s"] for r in rates]
