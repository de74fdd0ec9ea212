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
    results = {name: {"untraced": [], "traced": []} for name in cases}
    os.sched_setaffinity(0, {1})
    for r in range(ROUNDS):
        for name, args in cases.items():
            results[name]["untraced"].append(run_loop(exe, args))
        collector = build_collector(LogRules())
        collector.begin()
        try:
            for name, args in cases.items():
                results[name]["traced"].append(run_loop(exe, args))
                collector.interval()          # drain as the daemon would
        finally:
            collector.probe.close()
        os.truncate(log, 0)
        print(f"round {r + 1}/{ROUNDS} done", file=sys.stderr)
    print(f"{'case':40} {'untraced ns':>12} {'traced ns':>10} {'+ns':>7} {'ratio':>6}")
    for name, res in results.items():
        u, t = statistics.median(res["untraced"]), statistics.median(res["traced"])
        print(f"{name:40} {u:12.1f} {t:10.1f} {t - u:7.1f} {t / u:6.2f}")
    print(f"(medians of {ROUNDS} alternating rounds of {N} calls, loop pinned to CPU 0)")


if __name__ == "__main__":
    main()
