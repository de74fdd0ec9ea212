"""Case 5: a reset storm. One process makes RATE loopback connections a second and aborts
each (SO_LINGER 0): one RST sent and one received per connection, all by that process,
which runs in a cgroup of its own so its service is known. Measured: `surgewatch run`'s
CPU over the storm, and that it counted exactly as many resets as were made."""
import os
import subprocess
import time

from tests.bench.daemon import BenchDaemon
from tests.owncgroup import unit_cgroup
from tests.workloads.build import build


def run(workdir, rate=20_000, seconds=10):
    exe = build("resetstorm", workdir)
    logdir = os.path.join(workdir, "storm-logs")
    os.makedirs(logdir, exist_ok=True)
    with unit_cgroup(f"swstorm{os.getpid() % 10000}") as cg:
        d = BenchDaemon(workdir, logdir, interval=1.0, resets=True)
        try:
            d.attached()
            d.wait_stats(2)
            cpu_idle0, t_idle0 = d.cpu_seconds(), time.monotonic()
            time.sleep(2)
            cpu0, t0 = d.cpu_seconds(), time.monotonic()
            storm = subprocess.run([exe, str(rate), str(seconds)], capture_output=True,
                                   text=True, check=True, preexec_fn=cg.enter)
            cpu1, t1 = d.cpu_seconds(), time.monotonic()
            made = int(storm.stdout)
            time.sleep(2.5)                   # the storm's last interval closes
        finally:
            rc = d.stop()
    if rc != 0:
        raise RuntimeError(f"surgewatch run exited {rc}: {d.proc.stderr.read().decode()}")
    mine = [r for r in d.records if r["type"] == "rate" and r["service"] == cg.service]
    stats = [r for r in d.records if r["type"] == "stats"]
    return {
        "rate_target": rate, "seconds": seconds, "made": made,
        "made_per_s": made / (t1 - t0),
        "sent": sum(r.get("resets_sent", 0) for r in mine),
        "received": sum(r.get("resets_received", 0) for r in mine),
        "cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
        "cpu_pct_idle": 100 * (cpu0 - cpu_idle0) / (t0 - t_idle0),
        "lost": sum(s.get("resets_events_lost", 0) + s.get("resets_lost", 0) for s in stats),
    }
