"""A real log flood under `surgewatch run`: the alert opens, then closes; a writer above a
`[capacity]` limit gets a log_loss_risk alert, one below none, and a reload's new
capacity applies (docs/detection.md)."""
import json
import signal
import subprocess
import sys

import pytest

from tests.support.daemon import SURGEWATCH, Daemon, stderr_until
from tests.support.writers import PHASED_WRITER

pytestmark = pytest.mark.privileged


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
        # phases of (seconds, lines/s): quiet baseline, flood, quiet again
        writer = subprocess.run([sys.executable, "-c", PHASED_WRITER, str(log),
                                 "flood test line", "5:10", "1.5:3000", "2.5:10"],
                                stdout=subprocess.DEVNULL, timeout=60)
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


# -- [capacity]: lines/s per path glob (docs/detection.md, "Loss risk") --------------------
LINE = b"capacity test line\n"
OVER, UNDER = 2000, 20     # lines written at once: one interval of 0.2 s sees >= 1000 of
#                           OVER (> 10/s unless it lasted 100 s) and <= 20 of UNDER
#                           (< 100000/s unless it lasted 0.2 ms): no timing in the verdict


def _capacity_toml(limits):
    return "[capacity]\n" + "".join(f"{json.dumps(g)} = {c}\n" for g, c in limits.items())


def _capacity_daemon(tmp_path, limits):
    return Daemon(tmp_path, interval=0.2, resets=False, config_extra=_capacity_toml(limits))


def _writes_of(records, path):
    """[(rate record, writes to path)] of the rate records that have path."""
    return [(r, p["writes"]) for r in records if r["type"] == "rate"
            for p in r["paths"] if p["path"] == path]


def _capacity_alerts(records):
    return [(a["state"], a["service"], a["limit"]["key"]) for a in records
            if a["type"] == "alert" and a["signal"] == "log_loss_risk"
            and a["limit"]["key"].startswith("capacity:")]


def _capacity_entries(rec, glob):
    return [e for e in rec.get("loss_risk") or () if e.get("glob") == glob]


def test_capacity_over_opens_a_loss_risk_alert_under_raises_none(tmp_path):
    logdir = tmp_path / "logs"
    over_glob, under_glob = str(logdir / "over*.log"), str(logdir / "under*.log")
    d = _capacity_daemon(tmp_path, {over_glob: 10, under_glob: 100000})
    try:
        d.wait_meta(timeout=300)
        over = d.write_between_intervals("over.log", OVER, LINE)
        under = d.write_between_intervals("under.log", UNDER, LINE)  # 3+ intervals: closes
        assert d.stop() == 0, d.err
        err = d.err
    finally:
        d.kill()
    records = d.records
    over_w, under_w = _writes_of(records, over), _writes_of(records, under)
    assert sum(w for _, w in over_w) == OVER and sum(w for _, w in under_w) == UNDER
    (service,) = {r["service"] for r, _ in over_w + under_w}      # this test's process
    key = f"capacity:{over_glob}"
    assert _capacity_alerts(records) == [("open", service, key), ("close", service, key)], err
    opened, closed = [a for a in records if a["type"] == "alert"
                      and a["signal"] == "log_loss_risk" and a["limit"]["key"] == key]
    assert (opened["reason"], opened["threshold"], opened["top"]) == (
        "capacity", 10.0, {"paths": [{"path": over}]})
    assert opened["limit"] == {"limit": "capacity", "key": key, "glob": over_glob,
                               "capacity": 10.0, "allowed_per_s": 10.0}
    assert closed["close_reason"] == "below_limit"
    # each interval's rate record says so exactly when that interval was over 10 lines/s
    for rec, w in over_w:
        assert bool(_capacity_entries(rec, over_glob)) == (w / rec["interval"] > 10), rec
    assert not [r for r, _ in under_w if _capacity_entries(r, under_glob)]
    assert f"loss risk: {service} above its capacity {over_glob}: " in err, err
    assert f"loss risk over: {service} back under its capacity {over_glob} after " in err, err


def test_reload_applies_a_new_capacity(tmp_path):
    """SIGHUP with a lower capacity: the same writes, not at risk before, are after."""
    logdir = tmp_path / "logs"
    glob = str(logdir / "w-*.log")
    d = _capacity_daemon(tmp_path, {glob: 1e9})
    try:
        d.wait_meta(timeout=300)
        before = d.write_between_intervals("w-before.log", OVER, LINE)
        d.cfg.write_text(d.cfg.read_text().replace(_capacity_toml({glob: 1e9}),
                                                   _capacity_toml({glob: 10})))
        d.proc.send_signal(signal.SIGHUP)
        # set_capacity ran before this line (what was read; the rest is d.err after the exit)
        seen = stderr_until(d, "reloaded", timeout=30).decode(errors="replace")
        after = d.write_between_intervals("w-after.log", OVER, LINE)
        assert d.stop() == 0, seen + d.err
        err = seen + d.err
    finally:
        d.kill()
    records = d.records
    before_w, after_w = _writes_of(records, before), _writes_of(records, after)
    assert sum(w for _, w in before_w) == OVER and sum(w for _, w in after_w) == OVER
    assert not [r for r, _ in before_w if _capacity_entries(r, glob)]
    (service,) = {r["service"] for r, _ in before_w + after_w}
    key = f"capacity:{glob}"      # open, and closed in the 3 quiet intervals that follow
    assert _capacity_alerts(records) == [("open", service, key), ("close", service, key)], err
    opened, _ = [a for a in records if a["type"] == "alert" and a["signal"] == "log_loss_risk"
                 and a["limit"]["key"] == key]
    assert (opened["threshold"], opened["top"]) == (10.0, {"paths": [{"path": after}]})
    assert opened["seq"] > max(r["seq"] for r, _ in before_w)
