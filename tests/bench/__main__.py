"""`make bench`: traced vs untraced cost, measured in one run, alternating rounds.

Each case runs a C loop of one syscall with no probe attached and with the log-write
pipeline attached (the same code `surgewatch snapshot` runs), alternating, ROUNDS times,
pinned to CPU 0 while the collector drains on the other CPU. Prints medians and ratios.
"""
import os
import statistics
import subprocess
import sys
import tempfile

from tests.workloads.build import build

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
N = int(os.environ.get("BENCH_N", "2000000"))


def run_loop(exe, args):
    out = subprocess.run(["taskset", "-c", "0", exe, *args], capture_output=True, text=True,
                         check=True).stdout
    return float(out)


def main():
    from collector.host.logdest import LogRules
    from collector.snapshot import build_collector

    tmp = tempfile.mkdtemp(prefix="surgewatch-bench-")
    exe = build("syscall_loop", tmp)
    log = os.path.join(tmp, "bench.log")
    cases = {
        "write 1 B to a watched log file": ["write", log, str(N)],
        "write 1 B to /dev/null (unwatched)": ["write", "/dev/null", str(N)],
        "getppid (unrelated syscall)": ["getppid", "-", str(N)],
    }
    hooks = ("raw", "tracepoints")
    results = {name: {h: [] for h in ("untraced",) + hooks} for name in cases}
    os.sched_setaffinity(0, {1})
    for r in range(ROUNDS):
        for name, args in cases.items():
            results[name]["untraced"].append(run_loop(exe, args))
        for hook in hooks:
            collector = build_collector(LogRules(), probe_kwargs={"hook": hook})
            collector.begin()
            try:
                for name, args in cases.items():
                    results[name][hook].append(run_loop(exe, args))
                    collector.interval()          # drain as the daemon would
            finally:
                collector.probe.close()
        os.truncate(log, 0)
        print(f"round {r + 1}/{ROUNDS} done", file=sys.stderr)
    print(f"{'case':38} {'untraced':>9} " + " ".join(f"{h + ' ns':>15} {'+ns':>6} {'ratio':>5}"
                                                     for h in hooks))
    for name, res in results.items():
        u = statistics.median(res["untraced"])
        cols = []
        for h in hooks:
            t = statistics.median(res[h])
            cols.append(f"{t:15.1f} {t - u:6.1f} {t / u:5.2f}")
        print(f"{name:38} {u:9.1f} " + " ".join(cols))
    print(f"(ns per call: medians of {ROUNDS} alternating rounds of {N} calls, loop pinned "
          f"to CPU 0; 'raw' = raw_syscalls:sys_enter with an id filter, 'tracepoints' = "
          f"syscalls:sys_enter_* per write syscall)")


if __name__ == "__main__":
    main()
