"""Case 6: start-up, stop and the idle daemon (issue 13's targets).

- start: `surgewatch run` until the probes are attached and counting (its meta record) and
  until its first interval's data (first stats record, 1 s interval); `surgewatch snapshot`
  wall time minus the window it was asked to watch. bcc compiles both probes in two loader
  children at once: start-up is mostly the longer compile.
- stop: SIGTERM to exit, next to its floor measured in the same run: empty programs on the
  same hooks, detached the way the daemon detaches (tests/bench/bare.py --detach). Each
  perf-event tracepoint's detach waits for RCU grace periods in the kernel.
- idle: one daemon left alone for IDLE_S seconds on an otherwise idle host: CPU share from
  /proc/PID/stat (utime+stime, 10 ms ticks, hence the long window), RSS and PSS."""
import os
import statistics
import subprocess
import sys
import time

from tests.bench.daemon import BenchDaemon
from tests.support.daemon import SURGEWATCH

IDLE_S = float(os.environ.get("BENCH_IDLE_S", "60"))


def detach_floor():
    p = subprocess.Popen([sys.executable, "-m", "tests.bench.bare", "--detach"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "ready":
        raise RuntimeError("bare --detach failed to attach")
    p.stdin.close()
    out = p.stdout.readline().split()
    p.wait()
    return float(out[1])


def run(workdir, rounds=3):
    snap, attached, first, stop, floor = [], [], [], [], []
    for _ in range(rounds):
        t0 = time.monotonic()
        subprocess.run([SURGEWATCH, "snapshot", "--duration", "1", "--interval", "1",
                        "--json"], capture_output=True, check=True)
        snap.append(time.monotonic() - t0 - 1.0)
        d = BenchDaemon(workdir, workdir, interval=1.0, resets=True)
        try:
            _, t_meta = d.attached()
            _, t_stats = d.wait_stats(1)
        finally:
            d.stop()
        attached.append(t_meta - d.t_start)
        first.append(t_stats - d.t_start)
        stop.append(d.stop_s)
        floor.append(detach_floor())
    d = BenchDaemon(workdir, workdir, interval=1.0, resets=True)
    try:
        d.wait_stats(3)
        cpu0, w0 = d.cpu_seconds(), time.monotonic()
        time.sleep(IDLE_S)
        cpu1, w1 = d.cpu_seconds(), time.monotonic()
        rss, pss = d.rss_bytes(), d.pss_bytes()
    finally:
        d.stop()
    return {"snapshot_overhead_s": statistics.median(snap),
            "run_attached_s": statistics.median(attached),
            "run_first_data_s": statistics.median(first),
            "stop_s": statistics.median(stop), "stop_floor_s": statistics.median(floor),
            "idle_cpu_pct": 100 * (cpu1 - cpu0) / (w1 - w0), "idle_s": w1 - w0,
            "idle_rss_mb": rss / 2**20, "idle_pss_mb": pss / 2**20,
            "samples": {"snapshot": snap, "attached": attached, "first": first,
                        "stop": stop, "stop_floor": floor}}
