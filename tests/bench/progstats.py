"""Case 1b: what each of surgewatch's programs costs per run, by the kernel's own count.

    python -m tests.bench.progstats [hook ...]      (default: every hook this kernel offers)
    python -m tests.bench progstats                 (the same, in make bench)

For each write hook (tracepoints, fentry where the kernel allows it) a real `surgewatch run`
(resets on, as its defaults) is attached; kernel.bpf_stats_enabled is switched on only
around three loops of the pinned pairloop (1-byte writes to /dev/null, 1-byte appends to a
watched log file, getppid) and each program's run_cnt / run_time_ns growth is read with
bpftool. This is the figure that means something under QEMU's software CPU, where
wall-clock ratios do not (issue 14): ns per run of each program, next to the same figure on
the host. bpf_stats itself adds ~34 ns per run on this project's hosts (KERNEL-NOTES), so
the figures are upper bounds; the programs' relative costs are what to compare."""
import json
import os
import sys
import tempfile

from tests.bench.daemon import BenchDaemon
from tests.bench.syscalls import TRACING_TYPES, Loop, _progs, build_pairloop

N = int(os.environ.get("BENCH_PROGSTATS_N", "200000"))
CASES = ("null", "log", "ppid")


def _set_stats(on):
    with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
        f.write("1" if on else "0")


def offered_hooks():
    from collector.probes import fentry, logwrites
    from collector.probes.btf import BTF

    hooks = ["tracepoints"]
    if fentry.refusal(BTF.load(), logwrites.FENTRY_FUNCS) is None:
        hooks.append("fentry")
    return hooks


def measure(hook, workdir, n=N):
    """{program name: {case: (runs, ns per run)}} under `surgewatch run` with `hook`."""
    logdir = os.path.join(workdir, "logs")
    os.makedirs(logdir, exist_ok=True)
    logfile = os.path.join(logdir, "bench.log")
    loop = Loop(build_pairloop(workdir), logfile)
    before = set(_progs())
    daemon = BenchDaemon(workdir, logdir, hook=hook, cpu=1, resets=True)
    out = {}
    try:
        meta, _ = daemon.attached()
        ours = {i: p for i, p in _progs().items()
                if i not in before and p.get("type") in TRACING_TYPES}
        for case in CASES:
            loop.measure(case, 1000)                     # warm: page cache, the key
            _set_stats(True)
            try:
                start = _progs()
                loop.measure(case, n)
                end = _progs()
            finally:
                _set_stats(False)
            for pid in ours:
                a, b = start.get(pid, {}), end.get(pid, {})
                runs = b.get("run_cnt", 0) - a.get("run_cnt", 0)
                ns = b.get("run_time_ns", 0) - a.get("run_time_ns", 0)
                name = ours[pid].get("name", str(pid))
                out.setdefault(name, {})[case] = (runs, ns / runs if runs else 0.0)
        out["_hooks"] = {p: meta["probes"][p].get("hook") for p in meta.get("probes", {})}
    finally:
        daemon.stop()
        loop.close()
    return out


def report(results, n=N):
    print(f"\n-- case 1b: ns per program run by bpf_stats ({n:,} calls per case; only the "
          "programs that ran on at least half the calls)")
    for hook, progs in results.items():
        print(f"   write hook {hook} (probes: {progs.get('_hooks')})")
        for case in CASES:
            ran = [(name, c[case]) for name, c in sorted(progs.items())
                   if not name.startswith("_") and c.get(case, (0, 0))[0] >= n / 2]
            cells = ", ".join(f"{name} {r / n:.2f}/call {ns:.1f} ns" for name, (r, ns) in ran)
            print(f"     {case:5} {cells or 'no program runs'}")


def run(workdir, hooks=None):
    """{hook: measure(hook)} for every hook given or offered (make bench's entry)."""
    return {h: measure(h, os.path.join(workdir, h)) for h in hooks or offered_hooks()}


def main(argv):
    with tempfile.TemporaryDirectory(prefix="sw-progstats-") as d:
        results = run(d, argv)
    report(results)
    print(json.dumps(results, default=list))


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("progstats: run as root (bpf_stats, bpftool)")
    main(sys.argv[1:])
