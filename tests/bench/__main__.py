"""`make bench`: issue 7's six benchmarks, each figure printed next to its target.

    python -m tests.bench [syscalls] [progstats] [userspace] [resets] [startup] [interval]
                          [load] [peers]                                      (default: all)

Environment: BENCH_ROUNDS (syscall rounds, default 7), BENCH_N (calls per loop, default
500000); `peers` reads BENCH_ROUNDS, BENCH_PAIRS and BENCH_N itself, with defaults of its
own (tests/bench/peers.py). Results also go to build/bench/results.json. Run it on an
otherwise idle machine: every figure is a ratio or a CPU share, and another load skews both.
Method and recorded results: docs/performance.md."""
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from tests.bench import (interval, load, peers, peers_report, progstats, resetstorm, startup,
                         syscalls, userspace)

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
N = int(os.environ.get("BENCH_N", "500000"))
OUT = Path(__file__).resolve().parents[2] / "build" / "bench"


def verdict(ok):
    return "met" if ok else "MISSED"


def line(case, figure, target, ok):
    print(f"{case:44} {figure:>30}   {target:<22} {verdict(ok)}")


def report_userspace(r):
    print(f"\n-- case 4: {r['procs']} processes, {r['rate_target']:,} lines/s over "
          f"{r['keys_target']:,} keys, 1 s interval")
    line("4  collector CPU (steady window)", f"{r['cpu_pct']:.1f}% of a core "
         f"(self: {r['cpu_pct_reported']:.1f}%)", "<= 2%", r["cpu_pct"] <= 2)
    line("   CPU per key per interval", f"{r['cpu_us_per_key']:.1f} us "
         f"({r['keys']:.0f} keys)", "<= 2 us/key", r["cpu_us_per_key"] <= 2)
    line("   drain, wall time per interval", f"{r['drain_ms']:.0f} ms", "(info: CPU-contended)",
         True)
    line("   RSS after start-up / under load", f"{r['rss_start_mb']:.0f} / "
         f"{r['rss_end_mb']:.0f} MB (PSS {r.get('pss_end_mb', 0):.0f})", "<= 40 MB",
         r["rss_end_mb"] <= 40)
    line("   lines counted / written", f"{r['counted']:,} / {r['written']:,}", "exact",
         r["counted"] == r["written"])


def report_resets(r):
    print(f"\n-- case 5: reset storm, {r['rate_target']:,}/s for {r['seconds']} s")
    line("5  collector CPU during the storm", f"{r['cpu_pct']:.1f}% of a core "
         f"(idle {r['cpu_pct_idle']:.1f}%)", "<= 5%", r["cpu_pct"] <= 5)
    line("   resets made / sent / received", f"{r['made']:,} / {r['sent']:,} / "
         f"{r['received']:,} ({r['made_per_s']:,.0f}/s)", "exact",
         r["made"] == r["sent"] == r["received"])


def report_startup(r):
    print("\n-- case 6: start-up, stop, idle (loader children: stored programs, or bcc compiles)")
    line("6  `surgewatch run` to first data", f"{r['run_first_data_s']:.2f} s "
         f"(attached {r['run_attached_s']:.2f} s)", "<= 2 s", r["run_first_data_s"] <= 2)
    line("   the same, compiling (no cache)", f"{r['compiled_first_data_s']:.2f} s "
         f"(attached {r['compiled_attached_s']:.2f} s)", "(first start)", True)
    line("   `surgewatch snapshot` wall - window", f"{r['snapshot_overhead_s']:.1f} s",
         "(load + attach + exit)", True)
    line("   SIGTERM to exit", f"{r['stop_s']:.2f} s (floor {r['stop_floor_s']:.2f} s)",
         "<= 0.5 s", r["stop_s"] <= 0.5)
    line("   idle daemon CPU", f"{r['idle_cpu_pct']:.2f}% over {r['idle_s']:.0f} s",
         "<= 0.1%", r["idle_cpu_pct"] <= 0.1)
    line("   idle daemon RSS (PSS)", f"{r['idle_rss_mb']:.0f} MB ({r['idle_pss_mb']:.0f} MB)",
         "<= 30 MB", r["idle_rss_mb"] <= 30)


CASES = {
    "syscalls": (lambda w: syscalls.run(w, ROUNDS, N, logger_lines=50_000), syscalls.report),
    "progstats": (progstats.run, progstats.report),     # per program, every hook offered
    "userspace": (userspace.run, report_userspace),
    "resets": (resetstorm.run, report_resets),
    "startup": (startup.run, report_startup),
    "interval": (interval.run, interval.report),    # in-process, no kernel (issue 13)
    "load": (load.run, load.report),                # TCP load counting, bpf_stats (issue 18)
    "peers": (peers.run, peers_report.report),      # against syscount and bpftrace (issue 26)
}


def main(argv):
    chosen = argv or list(CASES)
    unknown = [c for c in chosen if c not in CASES]
    if unknown:
        print(f"bench: unknown case {unknown[0]!r}; choose from {', '.join(CASES)}",
              file=sys.stderr)
        return 2
    results = {"machine": {"kernel": platform.release(), "cpus": os.cpu_count(),
                           "load_before": os.getloadavg()[0],
                           "date": time.strftime("%Y-%m-%d %H:%M")}}
    for name in chosen:
        work = tempfile.mkdtemp(prefix=f"surgewatch-bench-{name}-")
        print(f"bench: running {name}...", file=sys.stderr, flush=True)
        results[name] = CASES[name][0](work)
    print(f"\nsurgewatch bench: {results['machine']['date']}, kernel "
          f"{results['machine']['kernel']}, {results['machine']['cpus']} CPUs, load before "
          f"{results['machine']['load_before']:.2f}")
    for name in chosen:
        CASES[name][1](results[name])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"\n(results: {OUT / 'results.json'}; method: docs/performance.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
