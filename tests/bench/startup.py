"""Case 6: start-up. bcc compiles the probes' C at every start, so the time from
`surgewatch snapshot` starting to its first data is mostly the compiler's. Measured for
the snapshot (its wall time minus the window it was asked to watch) and for
`surgewatch run`: until the probes are attached and counting (its meta record), and
until its first interval's data (first stats record, 1 s interval)."""
import statistics
import subprocess
import time

from tests.bench.daemon import SURGEWATCH, BenchDaemon


def run(workdir, rounds=3):
    snap, attached, first = [], [], []
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
    return {"snapshot_overhead_s": statistics.median(snap),
            "run_attached_s": statistics.median(attached),
            "run_first_data_s": statistics.median(first),
            "samples": {"snapshot": snap, "attached": attached, "first": first}}
