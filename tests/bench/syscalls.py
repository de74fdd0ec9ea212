"""Cases 1-3: what a traced syscall costs the process making it.

1. 1-byte write(2) to a log file (O_APPEND, the file counted) and to /dev/null (unrelated);
2. getppid(2) (a syscall surgewatch does not trace);
3. Python logging with a FileHandler into a watched directory, as fast as it can
   (untraced vs a real `surgewatch run`, best of 7 per round).

Cases 1-2 are measured with the paired method of KERNEL-NOTES ("Measuring on this VM"),
run_paired() below: one pinned loop process (pairloop.c, CPU 0) measures on request; a
tracer process per condition (bare.py --serve, CPU 1) compiles once and attaches and
detaches on request; each attached measurement is compared with the detached ones right
before and after it, and the figure is the median of those paired deltas per VM mode."""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.daemon import BenchDaemon

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



def _pinned(cmd):
    out = subprocess.run(["taskset", "-c", "0", *cmd], capture_output=True, text=True,
                         check=True).stdout
    return float(out)


class Tracer:
    """"untraced", "bare" or a write hook: attached for the duration of a with-block."""

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


def run_logger(workdir, rounds, logger_lines):
    """Case 3: Python logging lines/s, untraced vs a real `surgewatch run` (best of 7 per
    round: a Python process's speed here swings by ~40% between runs, bimodal)."""
    logdir = os.path.join(workdir, "logs")
    os.makedirs(logdir, exist_ok=True)
    res = {t: [] for t in ("untraced", "tracepoints")}
    os.sched_setaffinity(0, {1})
    for r in range(rounds):
        for tracer in res:
            with Tracer(tracer, workdir, logdir):
                res[tracer].append(_best(
                    [sys.executable, "-c", LOGGER, os.path.join(logdir, "py.log"),
                     str(logger_lines)], better=max, tries=7))
            for f in os.listdir(logdir):
                os.truncate(os.path.join(logdir, f), 0)
        print(f"  logger: round {r + 1}/{rounds}", file=sys.stderr, flush=True)
    return {t: statistics.median(v) for t, v in res.items()} | {"samples": res}


PAIRS = int(os.environ.get("BENCH_PAIRS", "6"))
PAIR_N = int(os.environ.get("BENCH_PAIR_N", "200000"))


def run(workdir, rounds, n, logger_lines):
    out = {"paired": run_paired(workdir, rounds, PAIRS, PAIR_N)}
    if os.environ.get("BENCH_LOGGER", "1") != "0":
        out["logger"] = run_logger(workdir, min(rounds, 3), logger_lines)
    return out


def report(r):
    report_paired(r["paired"])
    lg = r.get("logger")
    if lg:
        lu, lt = lg["untraced"], lg["tracepoints"]
        print(f"{'3  Python logging FileHandler':44} {lu:,.0f} -> {lt:,.0f} lines/s "
              f"({100 * (lt / lu - 1):+.1f}%)   <= 2% fewer "
              f"{'met' if lt >= 0.98 * lu else 'MISSED'}")


# -- the paired method (cases 1-2) ---------------------------------------------------------
PAIR_CASES = ("null", "log", "ppid")
TRACING_TYPES = {"tracepoint", "raw_tracepoint", "raw_tracepoint_writable", "kprobe",
                 "tracing", "perf_event", "lsm", "ext"}
FOREIGN_CPU_MAX = 0.05        # of one CPU over a round: more and the round is redone


def build_pairloop(workdir):
    out = Path(workdir) / "pairloop"
    subprocess.run(["gcc", "-O2", "-o", str(out), str(Path(__file__).with_name("pairloop.c"))],
                   check=True)
    return str(out)


class Loop:
    """The pinned measuring process: one request line, one ns-per-call answer."""

    def __init__(self, exe, logfile):
        self.proc = subprocess.Popen(["taskset", "-c", "0", exe, logfile], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def measure(self, case, n):
        self.proc.stdin.write(f"{case} {n}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class Served:
    """A tracer process that attaches/detaches on request (bare.py --serve)."""

    def __init__(self, kind, env=None):
        self.kind = kind
        self.proc = subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, "-m", "tests.bench.bare", "--serve", kind],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, **(env or {})))
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"bench tracer {kind} failed to load")
        self.state = json.loads(line.split(" ", 1)[1])
        self.ids = {int(k): v for k, v in self._ask("ids").items()}

    def _ask(self, cmd):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"bench tracer {self.kind} died")
        return json.loads(reply) if cmd == "ids" else reply

    def attach(self):
        self._ask("attach")

    def detach(self):
        self._ask("detach")

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _progs():
    out = subprocess.run(["bpftool", "-j", "prog", "list"], capture_output=True, text=True,
                         check=True).stdout
    return {p["id"]: p for p in json.loads(out)}


def _cpu_busy():
    """Busy jiffies of every CPU (/proc/stat: user..steal, minus idle and iowait)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                v = [int(x) for x in line.split()[1:9]]
                return sum(v) - v[3] - v[4]
    return 0


def _proc_cpu(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def _bpf_stats_enabled():
    with open("/proc/sys/kernel/bpf_stats_enabled") as f:
        return f.read().strip() != "0"


def _guard(ours):
    """Why a round is contaminated, or None: a tracing program we did not load, or bpf_stats
    switched on (it adds ~34 ns per program run)."""
    if _bpf_stats_enabled():
        return "kernel.bpf_stats_enabled is 1"
    foreign = [f"{p['id']}:{p.get('name', '?')}" for p in _progs().values()
               if p.get("type") in TRACING_TYPES and p["id"] not in ours]
    return f"foreign tracing programs {foreign}" if foreign else None


def _one_round(loop, tracers, pairs, n):
    """K attach/detach pairs per tracer; returns {tracer: [(case, before, on, after)]}."""
    out = {}
    for name, tr in tracers.items():
        rows = []
        before = {c: loop.measure(c, n) for c in PAIR_CASES}
        for _ in range(pairs):
            tr.attach()
            on = {c: loop.measure(c, n) for c in PAIR_CASES}
            tr.detach()
            after = {c: loop.measure(c, n) for c in PAIR_CASES}
            rows += [(c, before[c], on[c], after[c]) for c in PAIR_CASES]
            before = after
        out[name] = rows
    return out


def _mode_split(values):
    """The threshold between the VM's fast and slow mode for one case (None: one mode):
    the widest relative gap in the sorted detached figures, if it is wider than 10%."""
    v = sorted(values)
    if len(v) < 4:
        return None
    ratio, i = max((v[i + 1] / v[i], i) for i in range(len(v) - 1))
    return (v[i] + v[i + 1]) / 2 if ratio > 1.10 else None


def summarize_pairs(rounds, cases=PAIR_CASES):
    """Median paired delta per tracer, case and mode; pairs whose two detached neighbours
    are in different modes (the VM switched during the pair) are dropped."""
    detached = {c: [] for c in cases}
    for rnd in rounds:
        for rows in rnd.values():
            for c, b, _on, a in rows:
                detached[c] += [b, a]
    split = {c: _mode_split(v) for c, v in detached.items()}
    res = {}
    for rnd in rounds:
        for name, rows in rnd.items():
            for c, b, on, a in rows:
                t = split[c]
                mb = "all" if t is None else ("fast" if b < t else "slow")
                ma = "all" if t is None else ("fast" if a < t else "slow")
                entry = res.setdefault(name, {}).setdefault(c, {})
                if mb != ma:
                    entry.setdefault("dropped", 0)
                    entry["dropped"] += 1
                    continue
                m = entry.setdefault(mb, {"deltas": [], "base": []})
                m["deltas"].append(on - (b + a) / 2)
                m["base"].append((b + a) / 2)
    for by_case in res.values():
        for entry in by_case.values():
            for mode, m in entry.items():
                if mode == "dropped":
                    continue
                m["n"] = len(m["deltas"])
                m["delta_ns"] = statistics.median(m["deltas"])
                m["base_ns"] = statistics.median(m["base"])
    return {"modes": split, "by_tracer": res}


def _stats_pass(loop, tracers, n):
    """bpf_stats in a pass of its own: ns per run of each program on each case."""
    per = {}
    with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
        f.write("1")
    try:
        for name, tr in tracers.items():
            tr.attach()
            try:
                for c in PAIR_CASES:
                    b = _progs()
                    loop.measure(c, n)
                    a = _progs()
                    for pid, prog in tr.ids.items():
                        runs = a.get(pid, {}).get("run_cnt", 0) - b.get(pid, {}).get("run_cnt", 0)
                        if runs <= 0:
                            continue
                        ns = a[pid].get("run_time_ns", 0) - b[pid].get("run_time_ns", 0)
                        key = f"{prog}" if name != "floor" else "empty"
                        per.setdefault(name, {}).setdefault(c, {})[key] = {
                            "runs": runs, "ns_per_run": ns / runs}
            finally:
                tr.detach()
    finally:
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write("0")
    return per


def paired_conditions():
    """Tracers of the paired run: the floor, then surgewatch with each fd walk asked for in
    BENCH_FD_WALKS (default: what the probe picks, and the forced probe-read fallback)."""
    walks = [w for w in os.environ.get("BENCH_FD_WALKS", "auto,probe_read").split(",") if w]
    conds = {"floor": ("floor", {})}
    for w in walks:
        conds[f"surgewatch[{w}]"] = ("probes", {"SURGEWATCH_FD_WALK": w})
    return conds


def run_paired(workdir, rounds, pairs, n):
    exe = build_pairloop(workdir)
    log = os.path.join(workdir, "pair.log")
    os.sched_setaffinity(0, {1})
    guard0 = _guard(set())
    if guard0:
        raise RuntimeError(f"bench: not measuring, {guard0}")
    tracers = {}
    try:
        for name, (kind, env) in paired_conditions().items():
            tracers[name] = Served(kind, env)
        ours = {i for t in tracers.values() for i in t.ids}
        loop = Loop(exe, log)
        pids = [loop.proc.pid, os.getpid()] + [t.proc.pid for t in tracers.values()]
        kept, notes = [], []
        attempts = 0
        while len(kept) < rounds and attempts < 2 * rounds:
            attempts += 1
            busy0, ours0, t0 = _cpu_busy(), _proc_cpu(pids), time.monotonic()
            rnd = _one_round(loop, tracers, pairs, n)
            wall = time.monotonic() - t0
            foreign = ((_cpu_busy() - busy0) - (_proc_cpu(pids) - ours0)) \
                / os.sysconf("SC_CLK_TCK") / wall
            why = _guard(ours) or (f"foreign CPU {foreign:.0%} of a CPU"
                                   if foreign > FOREIGN_CPU_MAX else None)
            notes.append({"attempt": attempts, "foreign_cpu": round(foreign, 4),
                          "wall_s": round(wall, 2), "contaminated": why})
            if why:
                print(f"  paired: round {attempts} contaminated ({why}), redone",
                      file=sys.stderr, flush=True)
                continue
            kept.append(rnd)
            print(f"  paired: round {len(kept)}/{rounds} (foreign CPU {foreign:.1%})",
                  file=sys.stderr, flush=True)
        stats = _stats_pass(loop, tracers, n)
        loop.close()
        state = {name: t.state for name, t in tracers.items()}
    finally:
        for t in tracers.values():
            t.close()
    out = summarize_pairs(kept)
    out.update(rounds_kept=len(kept), rounds=notes, bpf_stats=stats, n=n, pairs=pairs,
               fd_walk=state, raw=kept)
    return out


def report_paired(r):
    """Print each condition above the detached baseline and above the floor, per mode."""
    by = r["by_tracer"]
    floor = by.get("floor", {})
    print(f"\n-- cases 1-2, paired method ({r['rounds_kept']} rounds x {r['pairs']} pairs, "
          f"{r['n']:,} calls per measurement; ns per call, median paired delta)")
    labels = {"null": "1b write 1 B, /dev/null (unrelated)",
              "log": "1a write 1 B, log append", "ppid": "2  getppid (not traced)"}
    targets = {"null": 10, "log": 35}
    for c in PAIR_CASES:
        for mode in ("fast", "slow", "all"):
            f = floor.get(c, {}).get(mode)
            if not f:
                continue
            print(f"{labels[c]} [{mode}] untraced {f['base_ns']:.0f} ns; floor "
                  f"+{f['delta_ns']:.1f} (n={f['n']})")
            for name, cases in by.items():
                if name == "floor" or mode not in cases.get(c, {}):
                    continue
                m = cases[c][mode]
                above = m["delta_ns"] - f["delta_ns"]
                tgt = targets.get(c)
                verdict = "" if tgt is None else (f"  target <= +{tgt}: "
                                                  + ("met" if above <= tgt else "MISSED"))
                print(f"   {name:24} +{m['delta_ns']:.1f} ns, above floor {above:+.1f} "
                      f"(n={m['n']}){verdict}")
    for name, cases in r["bpf_stats"].items():
        for c, progs in cases.items():
            for prog, st in sorted(progs.items()):
                print(f"   bpf_stats {name:22} {c:5} {prog:16} {st['ns_per_run']:6.1f} ns/run "
                      f"({st['runs']:,} runs)")
    print(f"   fd walk in use: {r['fd_walk']}")
