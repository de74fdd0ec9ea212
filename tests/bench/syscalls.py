"""Cases 1-3: what a traced syscall costs the process making it.

1. 1-byte write(2) loops to a watched log file and to /dev/null (unwatched);
2. a getppid(2) loop (a syscall surgewatch does not trace);
3. Python logging with a FileHandler into a watched directory, as fast as it can.
Each round runs every case untraced, under the bare floor (bare.py), and under
`surgewatch run` with each write hook, in that order; the loop is pinned to CPU 0 and
the tracer to CPU 1. Within a round each case runs 3 times and keeps its best (noise on a
shared virtual machine only ever adds time); the figure is the median over rounds.
After the timed runs of each hook, kernel.bpf_stats_enabled is switched on for one more
pass so that the kernel reports what each surgewatch program costs per run by itself."""
import json
import os
import statistics
import subprocess
import sys

from tests.bench.daemon import BenchDaemon
from tests.workloads.build import build

LOGGER = """
import logging, sys, time
n = int(sys.argv[2])
h = logging.FileHandler(sys.argv[1])
h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
log = logging.getLogger("bench")
log.addHandler(h)
log.setLevel(logging.INFO)
log.propagate = False
t0 = time.perf_counter()
for i in range(n):
    log.info("request done status=%d bytes=%d", 200, i)
print(n / (time.perf_counter() - t0))
"""

TRACERS = ("untraced", "bare", "tracepoints", "raw")


def _pinned(cmd):
    out = subprocess.run(["taskset", "-c", "0", *cmd], capture_output=True, text=True,
                         check=True).stdout
    return float(out)


class Tracer:
    """One of TRACERS attached for the duration of a with-block."""

    def __init__(self, kind, workdir, logdir):
        self.kind, self.workdir, self.logdir = kind, workdir, logdir
        self.proc = self.daemon = None

    def __enter__(self):
        if self.kind == "bare":
            self.proc = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-m",
                                          "tests.bench.bare"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)
            if self.proc.stdout.readline() != "ready\n":
                raise RuntimeError("bare tracepoint helper failed to attach")
        elif self.kind != "untraced":
            self.daemon = BenchDaemon(self.workdir, self.logdir, hook=self.kind, cpu=1,
                                      resets=True)          # as `surgewatch run` defaults
            self.daemon.attached()
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        if self.daemon is not None and self.daemon.stop() != 0:
            raise RuntimeError(f"surgewatch run failed: {self.daemon.proc.stderr.read()}")


def _best(cmd, better=min, tries=3):
    return better(_pinned(cmd) for _ in range(tries))


def _bpf_stats(cases, loop):
    """{program name: ns per run} for surgewatch's programs over one pass of the cases."""
    def snapshot():
        out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True,
                             text=True, check=True).stdout
        return {p["id"]: p for p in json.loads(out)}

    with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
        f.write("1")
    try:
        before = snapshot()
        for args in cases.values():
            _pinned([loop, *args])
        after = snapshot()
    finally:
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write("0")
    per = {}
    for pid, p in after.items():
        b = before.get(pid, {})
        runs = p.get("run_cnt", 0) - b.get("run_cnt", 0)
        if runs > 0 and p.get("name", "").startswith(("enter_", "raw_sys", "exit_open", "sw_")):
            ns = p.get("run_time_ns", 0) - b.get("run_time_ns", 0)
            per[p["name"]] = {"runs": runs, "ns_per_run": ns / runs}
    return per


def run(workdir, rounds, n, logger_lines):
    loop = build("syscall_loop", workdir)
    logdir = os.path.join(workdir, "logs")
    os.makedirs(logdir, exist_ok=True)
    log = os.path.join(logdir, "bench.log")
    cases = {
        "write_watched": ["write", log, str(n)],
        "write_devnull": ["write", "/dev/null", str(n)],
        "getppid": ["getppid", "-", str(n)],
    }
    res = {c: {t: [] for t in TRACERS} for c in list(cases) + ["logger"]}
    prog_stats = {}
    os.sched_setaffinity(0, {1})
    for r in range(rounds):
        for tracer in TRACERS:
            with Tracer(tracer, workdir, logdir):
                for name, args in cases.items():
                    res[name][tracer].append(_best([loop, *args]))
                # a Python process's speed here swings by ~40% between runs (bimodal,
                # whatever is traced), so the logger gets more tries than the C loops
                res["logger"][tracer].append(_best(
                    [sys.executable, "-c", LOGGER, os.path.join(logdir, "py.log"),
                     str(logger_lines)], better=max, tries=7))
                if r == 0 and tracer in ("tracepoints", "raw"):
                    prog_stats[tracer] = _bpf_stats(cases, loop)
            for f in os.listdir(logdir):
                os.truncate(os.path.join(logdir, f), 0)
        print(f"  syscalls: round {r + 1}/{rounds}", file=sys.stderr, flush=True)
    out = {c: {t: statistics.median(v) for t, v in by.items()} | {"samples": by}
           for c, by in res.items()}
    out["programs"] = prog_stats
    return out
