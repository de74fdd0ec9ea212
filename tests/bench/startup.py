"""Case 6: start-up, stop and the idle daemon (issue 13's targets).

- start: `surgewatch run` until the probes are attached and counting (its meta record) and
  until its first interval's data (first stats record, 1 s interval); `surgewatch snapshot`
  wall time minus the window it was asked to watch. Each round starts the daemon twice:
  with no cache (bcc compiles both probes in two loader children at once: start-up is
  mostly the longer compile) and with the compiled probes stored in a cache of the run's
  own (probes.cache_dir, filled by one start before the rounds: what every restart of a
  host's daemon after its first does).
- stop: SIGTERM to exit, next to its floor measured in the same run: empty programs on the
  same hooks, detached the way the daemon detaches (tests/bench/bare.py --detach). Each
  perf-event tracepoint's detach waits for RCU grace periods in the kernel.
- idle: one daemon left alone for IDLE_S seconds on an otherwise idle host: CPU share from
  /proc/PID/stat (utime+stime, 10 ms ticks, hence the long window), RSS and PSS."""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
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


def start(workdir, cache):
    """(spawn to attached, spawn to first data, SIGTERM to exit, how the programs came)."""
    d = BenchDaemon(workdir, workdir, interval=1.0, resets=True,
                    env={"SURGEWATCH_PROBE_CACHE": cache})
    try:
        meta, t_meta = d.attached()
        _, t_stats = d.wait_stats(1)
    finally:
        d.stop()
    how = {p["programs"] for p in meta["probes"].values() if p.get("enabled")}
    return t_meta - d.t_start, t_stats - d.t_start, d.stop_s, "/".join(sorted(how))


def run(workdir, rounds=3):
    cache = tempfile.mkdtemp(prefix="sw-bench-cache-")
    try:
        return _run(workdir, rounds, cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _run(workdir, rounds, cache):
    snap, attached, first, stop, floor = [], [], [], [], []
    cold = {"attached": [], "first": [], "stop": []}
    start(workdir, cache)                # fills the cache
    env = dict(os.environ, SURGEWATCH_PROBE_CACHE=cache)
    for _ in range(rounds):
        t0 = time.monotonic()
        subprocess.run([SURGEWATCH, "snapshot", "--duration", "1", "--interval", "1",
                        "--json"], capture_output=True, check=True, env=env)
        snap.append(time.monotonic() - t0 - 1.0)
        a, f, s, how = start(workdir, "")
        assert how == "compiled", how
        cold["attached"].append(a)
        cold["first"].append(f)
        cold["stop"].append(s)
        a, f, s, how = start(workdir, cache)
        assert how == "stored", how
        attached.append(a)
        first.append(f)
        stop.append(s)
        floor.append(detach_floor())
    d = BenchDaemon(workdir, workdir, interval=1.0, resets=True,
                    env={"SURGEWATCH_PROBE_CACHE": cache})
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
            "compiled_attached_s": statistics.median(cold["attached"]),
            "compiled_first_data_s": statistics.median(cold["first"]),
            "stop_s": statistics.median(stop), "stop_floor_s": statistics.median(floor),
            "idle_cpu_pct": 100 * (cpu1 - cpu0) / (w1 - w0), "idle_s": w1 - w0,
            "idle_rss_mb": rss / 2**20, "idle_pss_mb": pss / 2**20,
            "samples": {"snapshot": snap, "attached": attached, "first": first,
                        "stop": stop, "stop_floor": floor, "compiled": cold}}
