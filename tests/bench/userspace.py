"""Case 4: what `surgewatch run` itself costs at a high log rate across many keys.

PROCS fanout processes each write RATE/PROCS lines/s round-robin over FILES_EACH log
files of their own: RATE lines/s over PROCS x FILES_EACH distinct (process, file) keys,
every key written every interval. The daemon runs as the systemd unit runs it would,
with its stream on a pipe (msgpack) and a 1 s interval. Measured: its CPU (utime+stime
from /proc over the steady window, and as it reports per interval), RSS after start-up
and at the end, drain time per interval and per key (its stats records), and that every
line written was counted."""
import os
import statistics
import subprocess
import sys
import time

from tests.bench.daemon import BenchDaemon
from tests.workloads.build import build


def run(workdir, procs=200, files_each=50, rate=100_000, seconds=14, hook="tracepoints"):
    exe = build("fanout", workdir)
    logdir = os.path.join(workdir, "fanout-logs")
    os.makedirs(logdir, exist_ok=True)
    d = BenchDaemon(workdir, logdir, interval=1.0, hook=hook)
    try:
        _, t_attached = d.attached()
        d.wait_stats(2)
        rss_start = d.rss_bytes()
        writers = [subprocess.Popen([exe, logdir, f"p{i}", str(files_each), str(rate / procs),
                                     str(seconds)], stdout=subprocess.PIPE, text=True)
                   for i in range(procs)]
        t_load = time.monotonic()
        # steady window: from 3 s after the writers start (every file opened and judged)
        # to 2 s before they stop
        time.sleep(3)
        cpu0, w0 = d.cpu_seconds(), time.monotonic()
        time.sleep(seconds - 5)
        cpu1, w1 = d.cpu_seconds(), time.monotonic()
        written = sum(int(p.communicate()[0]) for p in writers)
        rss_end, pss_end = d.rss_bytes(), d.pss_bytes()
        time.sleep(2.5)                       # the last lines' interval closes
    finally:
        rc = d.stop()
    if rc != 0:
        raise RuntimeError(f"surgewatch run exited {rc}: {d.proc.stderr.read().decode()}")
    stats = [r for r in d.records if r["type"] == "stats"]
    # paths under logdir, plus the "(other)" remainder (schema 1.3: a rate record lists
    # 20 paths per service) of records that only hold the writers' own processes
    counted = sum(p["writes"] for r in d.records if r["type"] == "rate"
                  for p in r.get("paths", ())
                  if p["path"].startswith(logdir + "/")
                  or (p["path"] == "(other)" and r.get("comms") == ["fanout"]))
    # intervals fully inside the steady window (stats arrive at the interval's end)
    steady = [s for s, t in zip(d.records, d.arrival)
              if s["type"] == "stats" and w0 + 1 <= t <= w1]
    drain_ms = [s["drain_ms"] for s in steady]
    keys = [s["keys"] for s in steady]
    return {
        "procs": procs, "keys_target": procs * files_each, "rate_target": rate,
        "written": written, "counted": counted,
        "cpu_pct": 100 * (cpu1 - cpu0) / (w1 - w0),
        "cpu_pct_reported": 100 * statistics.median(s["cpu_s"] / s["interval"] for s in steady),
        "rss_start_mb": rss_start / 2**20, "rss_end_mb": rss_end / 2**20,
        "pss_end_mb": pss_end / 2**20,
        "drain_ms": statistics.median(drain_ms),
        "keys": statistics.median(keys),
        "drain_us_per_key": statistics.median(1000 * dm / k for dm, k in zip(drain_ms, keys) if k),
        # all of the daemon's CPU in the steady window, per key drained per interval
        "cpu_us_per_key": 1e6 * (cpu1 - cpu0) / (w1 - w0) / statistics.median(keys),
        "intervals": len(stats), "steady_intervals": len(steady),
        "load_s": t_load - t_attached,
    }


if __name__ == "__main__":
    import json
    import tempfile
    print(json.dumps(run(tempfile.mkdtemp(prefix="sw-bench-"), *map(int, sys.argv[1:])),
                     indent=1))
