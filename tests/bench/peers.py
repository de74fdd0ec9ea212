"""Peers: what surgewatch adds to a syscall next to the tools an operator would run instead
(issue 26): bcc's syscount and a bpftrace one-liner, measured in the same paired rounds.

    python -m tests.bench peers             (`make bench` runs it with the other cases)

The table it prints: tests/bench/peers_report.py.

The paired method of KERNEL-NOTES ("Measuring on this VM") as tests/bench/syscalls.py runs
it: one pinned loop (pairloop.c, CPU 0) measures on request a 1-byte write to /dev/null
(unrelated), a 1-byte O_APPEND write to `pair.log` in the bench's directory (on the same
file system as /var/log here; counted by surgewatch through its default `*.log` glob) and
getppid. Every tracer and this driver run on CPU 1. Conditions, in an order rotated per
round, each detached, then K times (attached, detached), each attached figure minus the
mean of its two detached neighbours, the median per case and VM mode:
- floor: empty programs on exactly the hooks `surgewatch run` attaches (bare.py --serve
  floor), attached and detached on request by one process;
- surgewatch: the real `surgewatch run` of the checkout this runs from (PYTHONPATH), its
  default config except where its outputs go (segments, socket, lock in the bench's
  directory, Prometheus on a free loopback port; stdout msgpack into a pipe, as `auto`
  writes it), started and stopped (SIGTERM) for every pair. Each pair checks the count:
  the daemon's records hold exactly the loop's log writes made while it ran;
- syscount: /usr/sbin/syscount-bpfcc, started and stopped (SIGINT) for every pair;
- bpftrace: `bpftrace -e 'tracepoint:syscalls:sys_enter_write { @[pid, args->fd] =
  count(); }'`, started and stopped (SIGINT) for every pair.
A tool counts as attached when `bpftool perf list` shows its process holding all its
hooks (and, for surgewatch, its meta record came), and it is measured once its CPU has
settled. Per pair also: start (spawn to attached), stop (signal to exit), RSS and PSS
while attached. After a stop its programs must be gone before the next measurement.

Guards as syscalls.py: no tracing program but the floor's and the attached tool's,
bpf_stats off, other processes' CPU under 5% of a CPU over the round; a contaminated round
is redone while the time budget lasts; with no clean round the figures come from all
rounds, marked so.

Environment (the other benches' names, this case's defaults): BENCH_ROUNDS (6),
BENCH_PAIRS (4), BENCH_N (calls per measurement, 200,000), BENCH_PEERS_BUDGET_S (no redo
of a contaminated round after this many seconds, 420), BENCH_PEERS (the tools, default
"surgewatch,syscount,bpftrace"; the floor always runs)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.channels import _cpu_s, _own_cpu_s
from tests.bench.syscalls import (PAIR_CASES, TRACING_TYPES, Loop, Served, _cpu_busy, _guard,
                                  _progs, build_pairloop, summarize_pairs)
from tests.support import procfs
from tests.support.daemon import Daemon
from tests.support.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))
PAIRS = int(os.environ.get("BENCH_PAIRS", "4"))
N = int(os.environ.get("BENCH_N", "200000"))
BUDGET_S = float(os.environ.get("BENCH_PEERS_BUDGET_S", "420"))
TOOLS = [t for t in os.environ.get("BENCH_PEERS", "surgewatch,syscount,bpftrace").split(",")
         if t]
FOREIGN_CPU_MAX = 0.05
WARM = 2000                       # calls pairloop makes before each measurement
SYSCOUNT = "/usr/sbin/syscount-bpfcc"
BPFTRACE_PROG = "tracepoint:syscalls:sys_enter_write { @[pid, args->fd] = count(); }"


def _perf_hooks(pid):
    """The tracepoints process `pid` holds BPF programs on: [(tracepoint, prog id)]."""
    out = subprocess.run(["bpftool", "-j", "perf", "list"], capture_output=True, text=True,
                         check=True).stdout
    return [(e.get("tracepoint", e.get("fd_type")), e["prog_id"]) for e in json.loads(out)
            if e.get("pid") == pid]


def _tree(pid):
    """pid and its live descendants."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
            except OSError:
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def _mem_mb(pids):
    rss = pss = 0
    for p in pids:
        try:
            rss += procfs.rss_kb(p)
            pss += procfs.pss_kb(p)
        except OSError:
            pass
    return rss / 1024, pss / 1024


class Tool:
    """A tracer process started for each attach and stopped for each detach."""

    stop_signal = signal.SIGINT

    def __init__(self, name, argv, hooks):
        self.name, self.argv, self.hooks = name, argv, hooks
        self.proc = None
        self.ids = {}
        self.samples = {"start_s": [], "stop_s": [], "gone_s": [], "rss_mb": [], "pss_mb": []}
        self.held = None           # the hooks it held, first start

    def spawn(self):
        # SIGINT back to its default: a bench started in the background (`cmd &`) has it
        # ignored, and a Python tool (syscount) then never sees its KeyboardInterrupt
        return subprocess.Popen(["taskset", "-c", "1", *self.argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def ready(self):
        """Attached: its process holds all its hooks."""
        held = _perf_hooks(self.proc.pid)
        return held if len(held) >= self.hooks else None

    def attach(self):
        before = set(_progs())
        t0 = time.monotonic()
        self.proc = self.spawn()
        end = t0 + 120
        while (held := self.ready()) is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode} before it "
                                   f"attached: {self.proc.stderr.read().decode()[-500:]}")
            if time.monotonic() > end:
                raise RuntimeError(f"{self.name}: not attached in 120 s")
            time.sleep(0.02)
        self.samples["start_s"].append(time.monotonic() - t0)
        self.held = self.held or sorted(tp for tp, _ in held)
        self.ids = {i: p for i, p in _progs().items()
                    if i not in before and p.get("type") in TRACING_TYPES}
        self._settle()
        rss, pss = _mem_mb(_tree(self.proc.pid))
        self.samples["rss_mb"].append(rss)
        self.samples["pss_mb"].append(pss)

    def _settle(self, window=0.3, limit=5.0):
        """Until the tool's processes used at most one clock tick in `window` seconds."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            pids = _tree(self.proc.pid)
            c0 = _cpu_s(pids)
            time.sleep(window)
            if _cpu_s(pids) - c0 <= 1.5 / procfs.CLK_TCK:
                return

    def stop(self):
        t0 = time.monotonic()
        self.proc.send_signal(self.stop_signal)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        return code, time.monotonic() - t0

    def detach(self):
        code, stop_s = self.stop()
        self.samples["stop_s"].append(stop_s)
        t0 = time.monotonic()
        while set(self.ids) & set(_progs()):          # released after the exit, not at it
            if time.monotonic() - t0 > 10:
                raise RuntimeError(f"{self.name}: programs {sorted(self.ids)} still loaded "
                                   "10 s after its exit")
            time.sleep(0.02)
        self.samples["gone_s"].append(stop_s + time.monotonic() - t0)
        if code not in (0, -self.stop_signal):
            raise RuntimeError(f"{self.name} exited {code}: {self.err()}")
        self.proc = None

    def err(self):
        return self.proc.stderr.read().decode(errors="replace")[-500:] if self.proc else ""


class SurgewatchTool(Tool):
    """The real daemon, default config with its outputs moved into the bench's directory;
    every pair's count of the loop's log writes is checked against what the loop wrote."""

    stop_signal = signal.SIGTERM

    def __init__(self, workdir, hooks, loop_pid, log):
        super().__init__("surgewatch", [], hooks)
        self.workdir, self.loop_pid, self.log = workdir, loop_pid, os.path.realpath(log)
        self.daemon = None
        self.checks = []
        self.meta = None

    def config(self):
        d = Path(self.workdir)
        return (f"[outputs.segments]\ndir = {json.dumps(str(d / 'seg'))}\n"
                f"[outputs.socket]\npath = {json.dumps(str(d / 'run' / 'stream.sock'))}\n"
                f"[outputs.prometheus]\nlisten = \"127.0.0.1:{free_port()}\"\n"
                # the default's cache, in the bench's directory: the first start compiles,
                # the rest load the stored programs, as a host's restarts do
                f"[probes]\ncache_dir = {json.dumps(str(d / 'probe-cache'))}\n")

    def spawn(self):
        self.daemon = Daemon(self.workdir, stdout="msgpack", config_text=self.config(),
                             env={"PYTHONPATH": str(ROOT)}, cpu=1)
        return self.daemon.proc

    def ready(self):
        held = super().ready()
        if held is None or not any(r.get("type") == "meta" for r in self.daemon.records):
            return None
        return held

    def attach(self):
        super().attach()
        self.meta = self.meta or self.daemon.attached()[0]

    def stop(self):
        t0 = time.monotonic()
        code = self.daemon.stop()
        return code, time.monotonic() - t0

    def detach(self, written=None):
        super().detach()
        self.checks.append(self._count(written))
        self.daemon = None

    def err(self):
        return self.daemon.err if self.daemon else ""

    def _count(self, written):
        counted, other = 0, {}
        for r in self.daemon.records:
            if r.get("type") != "rate":
                continue
            for p in r.get("paths", ()):
                if self.loop_pid not in p.get("pids", ()):
                    continue
                if p["path"] == self.log:
                    counted += p["writes"]
                else:
                    other[p["path"]] = other.get(p["path"], 0) + p["writes"]
        return {"written": written, "counted": counted, "other": other,
                "exact": counted == written and not other}


class Floor(Served):
    """bare.py --serve floor, with the hooks it holds once attached."""

    def hooks(self):
        self.attach()
        try:
            return sorted(tp for tp, _ in _perf_hooks(self.proc.pid))
        finally:
            self.detach()


def _tools(workdir, floor_hooks, loop, log):
    """The tools asked for that exist here; {name: skip reason} for the others."""
    tools, skipped = {}, {}
    for name in TOOLS:
        if name == "surgewatch":
            tools[name] = SurgewatchTool(os.path.join(workdir, "run"), len(floor_hooks),
                                         loop.proc.pid, log)
        elif name == "syscount":
            if os.access(SYSCOUNT, os.X_OK):
                tools[name] = Tool(name, [SYSCOUNT], 1)
            else:
                skipped[name] = (f"{SYSCOUNT} missing: apt-get install bpfcc-tools "
                                 "(make test-setup)")
        elif name == "bpftrace":
            exe = subprocess.run(["sh", "-c", "command -v bpftrace"], capture_output=True,
                                 text=True).stdout.strip()
            if exe:
                tools[name] = Tool(name, [exe, "-e", BPFTRACE_PROG], 1)
            else:
                skipped[name] = ("bpftrace missing: apt-get install bpftrace "
                                 "(tests/packages.txt, make test-setup)")
        else:
            raise ValueError(f"BENCH_PEERS: unknown tool {name!r}")
    return tools, skipped


def _measure_all(loop):
    return {c: loop.measure(c, N) for c in PAIR_CASES}


def _one_round(loop, floor, tools, order, pairs):
    """{condition: [(case, before, on, after)]}; the reason it is contaminated, or None."""
    out, why = {}, None
    for name in order:
        tr = floor if name == "floor" else tools[name]
        rows = []
        before = _measure_all(loop)
        for _ in range(pairs):
            tr.attach()
            on = _measure_all(loop)
            why = why or _guard(set(floor.ids) | set(getattr(tr, "ids", {})))
            if name == "surgewatch":
                tr.detach(written=WARM + N)
            else:
                tr.detach()
            after = _measure_all(loop)
            why = why or _guard(set(floor.ids))
            rows += [(c, before[c], on[c], after[c]) for c in PAIR_CASES]
            before = after
        out[name] = rows
    return out, why


def _checkout():
    def git(*a):
        return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True,
                              text=True).stdout.strip()
    return {"root": str(ROOT), "commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def _wait_quiet():
    """Another tool's programs may be on their way out: wait up to 60 s for none."""
    end = time.monotonic() + 60
    while _guard(set()) and time.monotonic() < end:
        time.sleep(1)
    why = _guard(set())
    if why:
        raise RuntimeError(f"bench peers: not measuring, {why}")


def run(workdir):
    from collector.probes.kernel import mount_tracefs

    mount_tracefs()                  # bpftrace and bcc find tracepoints through tracefs
    os.sched_setaffinity(0, {1})
    _wait_quiet()
    t_begin = time.monotonic()
    log = os.path.join(workdir, "pair.log")
    loop = Loop(build_pairloop(workdir), log)
    floor = tools = None
    try:
        floor = Floor("floor")
        floor_hooks = floor.hooks()
        tools, skipped = _tools(workdir, floor_hooks, loop, log)
        for name, why in skipped.items():
            print(f"  peers: {name} skipped: {why}", file=sys.stderr, flush=True)
        names = ["floor", *tools]
        kept, dirty, notes = [], [], []
        attempts = 0
        t_rounds = time.monotonic()
        while len(kept) < ROUNDS and attempts < 2 * ROUNDS and \
                (attempts < ROUNDS or time.monotonic() - t_rounds < BUDGET_S):
            order = names[attempts % len(names):] + names[:attempts % len(names)]
            attempts += 1
            pids = [loop.proc.pid, floor.proc.pid]
            busy0, ours0, own0, t0 = _cpu_busy(), _cpu_s(pids), _own_cpu_s(), time.monotonic()
            rnd, why = _one_round(loop, floor, tools, order, PAIRS)
            wall = time.monotonic() - t0
            busy = (_cpu_busy() - busy0) / os.sysconf("SC_CLK_TCK")
            foreign = (busy - (_cpu_s(pids) - ours0) - (_own_cpu_s() - own0)) / wall
            if not why and foreign > FOREIGN_CPU_MAX:
                why = f"foreign CPU {foreign:.0%} of a CPU"
            notes.append({"attempt": attempts, "order": order, "foreign_cpu": round(foreign, 4),
                          "wall_s": round(wall, 1), "contaminated": why,
                          "load1": os.getloadavg()[0]})
            (dirty if why else kept).append(rnd)
            print(f"  peers: round {attempts}: {why or 'clean'} (foreign CPU {foreign:.1%}, "
                  f"{wall:.0f} s)", file=sys.stderr, flush=True)
    finally:
        for tr in (tools or {}).values():
            if tr.proc is not None and tr.proc.poll() is None:
                tr.proc.kill()
                tr.proc.wait()
        if floor is not None:
            floor.close()
        loop.close()
    sw = tools.get("surgewatch")
    return {"clean": summarize_pairs(kept) if kept else None,
            "all": summarize_pairs(kept + dirty), "rounds_kept": len(kept), "rounds": notes,
            "pairs": PAIRS, "n": N, "duration_s": round(time.monotonic() - t_begin, 1),
            "tools": {name: {"argv": tr.argv or "surgewatch run (default config)",
                             "hooks": tr.held, **tr.samples} for name, tr in tools.items()},
            "skipped": skipped, "floor_hooks": floor_hooks,
            "counts": sw.checks if sw else [],
            "surgewatch_probes": (sw.meta or {}).get("probes") if sw else None,
            "checkout": _checkout(), "raw": kept + dirty}

