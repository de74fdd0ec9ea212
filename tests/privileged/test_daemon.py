"""`surgewatch run` as a real process: known workload, SIGHUP mid-way, SIGTERM."""
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.support.daemon import SURGEWATCH, Daemon

pytestmark = pytest.mark.privileged

WRITER = textwrap.dedent("""
    import os, sys, time
    path, total, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    start = time.monotonic()
    for n in range(total):
        due = start + n / rate
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        os.write(fd, b"daemon test line\\n")
    os.close(fd)
""")

CONFIG = """
interval = 0.5
[log_rules]
globs = {globs}
[outputs.segments]
dir = "{seg}"
max_segment_age_s = {age}
[outputs.socket]
enabled = false
[outputs.prometheus]
enabled = false
"""


def test_run_known_workload_sighup_sigterm(tmp_path):
    from collector.records.segments import list_segments, read_segments

    seg = tmp_path / "seg"
    log = tmp_path / "w.log"
    total = 900

    d = Daemon(tmp_path, config_text=CONFIG.format(globs='["*.log"]', seg=seg, age=3600),
               extra=("--format", "json"))
    cfg, proc = d.cfg, d.proc
    try:
        first = d.next(timeout=300)              # the meta record: probes are attached
        assert first, d.err
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log), str(total), "600"])
        time.sleep(0.7)
        # reload mid-workload: new log rules (every verdict judged again) and a new
        # segment store setting (the store is reopened)
        cfg.write_text(CONFIG.format(globs='["*.log", "*.out"]', seg=seg, age=600))
        proc.send_signal(signal.SIGHUP)
        assert writer.wait(timeout=30) == 0
        d.stop()                                 # SIGTERM; d.stop_s: signal to exit
        stop_s, err = d.stop_s, d.err
    finally:
        d.kill()

    assert proc.returncode == 0, err
    assert stop_s < 2.0, f"stop took {stop_s:.2f}s"
    assert "reloaded" in err, err
    records = d.records                          # the meta record (first), then the rest
    check_stream(records, log, writer.pid, total, mode_argv=str(cfg))

    seg_records = list(read_segments(seg, lambda e, kind: pytest.fail(f"{kind}: {e}")))
    check_stream(seg_records, log, writer.pid, total, mode_argv=str(cfg), segments=True)
    assert len(list_segments(seg)) == 2          # the reload opened a new segment
    for _, path in list_segments(seg):
        from collector.records.segments import read_file
        assert next(iter(read_file(path)))["type"] == "meta"


def check_stream(records, log, pid, total, mode_argv, segments=False):
    assert records[0]["type"] == "meta"
    assert records[0]["mode"] == "run" and mode_argv in records[0]["argv"]
    body = [r for r in records[1:] if r["type"] != "meta"]
    stats = [r for r in body if r["type"] == "stats"]
    seqs = [s["seq"] for s in stats]
    assert seqs == list(range(len(seqs))) and len(seqs) >= 3
    # resets and alerts of other activity on the host may appear too: all documented types
    assert all(r["type"] in ("rate", "stats", "reset", "alert") for r in body)
    assert {r["seq"] for r in body if r["type"] == "rate"} <= set(seqs)
    if segments:
        assert all(s["segment_dropped_records"] == 0 for s in stats)
    paths = [p for r in body if r["type"] == "rate" for p in r["paths"] if p["path"] == str(log)]
    assert sum(p["writes"] for p in paths) == total
    assert sum(p["bytes"] for p in paths) == total * len(b"daemon test line\n")
    assert all(p["pids"] == [pid] for p in paths)


def test_bad_config_refused_before_loading(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("interval = 0\n")
    res = subprocess.run([SURGEWATCH, "run", "--config", str(cfg)], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"surgewatch: error: {cfg}: interval: ")
