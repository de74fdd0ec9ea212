"""Datagram channels and pipes: what the sendto/sendmsg programs and pipe counting cost.

    python -m tests.bench.channels          (`make bench` runs it after tests.bench)

The paired method of KERNEL-NOTES ("Measuring on this VM"), as tests/bench/syscalls.py
runs it, with one difference: the measured condition is a real `surgewatch run` (a
separate process, resets on as by default, `syslog_sockets = [the bench's socket]` in
[log_rules]), started and stopped for every pair, because what is measured needs the
daemon: the kernel matches a datagram's path against the table the daemon hands it, and a
pipe is judged "not a log" by the daemon at its first drain. The floor is an empty program
on exactly the hooks of both probes' plans (bare.py --serve floor), in the same rounds.

One pinned loop (chanloop.c, CPU 0; daemon, floor tracer and this driver on CPU 1)
measures on request: 1-byte write to /dev/null and to a pipe nobody reads as a runtime,
1-byte UDP sendto/sendmsg and TCP send on loopback (peers the loop owns), and a 32-byte
syslog line by send/sendmsg on an AF_UNIX datagram socket connected to the configured
path. Per round and condition: detached, then K times (attached, detached); each attached
figure minus the mean of its two detached neighbours; median per case and VM mode.
Every daemon pair also checks the count: the syslog channel must show exactly the
datagrams the loop sent while it ran, and nothing else of the loop's may be counted (the
pipe is not a log). bpf_stats per program in a pass of its own at the end.

Environment: BENCH_CHAN_ROUNDS (default 4), BENCH_CHAN_PAIRS (default 3),
BENCH_CHAN_MS (target ms per measurement, default 25), BENCH_CHAN_BUDGET_S (no redo of a
contaminated round after this many seconds, default 120)."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.syscalls import (TRACING_TYPES, Served, _bpf_stats_enabled, _cpu_busy,
                                  _proc_cpu, _progs, summarize_pairs)
from tests.support.daemon import Daemon

CASES = ("null", "pipe", "udp", "udpmsg", "tcp", "syslog", "syslogmsg")
LABELS = {"null": "write 1 B to /dev/null", "pipe": "write 1 B to a pipe (not a log)",
          "udp": "UDP sendto 1 B, loopback", "udpmsg": "UDP sendmsg 1 B, loopback",
          "tcp": "TCP send 1 B, loopback", "syslog": "syslog send (AF_UNIX dgram, counted)",
          "syslogmsg": "syslog sendmsg (AF_UNIX dgram, counted)"}
SYSLOG_CASES = ("syslog", "syslogmsg")
ROUNDS = int(os.environ.get("BENCH_CHAN_ROUNDS", "4"))
PAIRS = int(os.environ.get("BENCH_CHAN_PAIRS", "3"))
TARGET_MS = float(os.environ.get("BENCH_CHAN_MS", "25"))
BUDGET_S = float(os.environ.get("BENCH_CHAN_BUDGET_S", "120"))
FOREIGN_CPU_MAX = 0.05
WARM = 2000                    # calls chanloop makes before each measurement
INTERVAL = 0.5


class ChanLoop:
    """The pinned measuring process and the syslog receiver it drains."""

    def __init__(self, workdir):
        exe = Path(workdir) / "chanloop"
        subprocess.run(["gcc", "-O2", "-o", str(exe),
                        str(Path(__file__).with_name("chanloop.c"))], check=True)
        self.path = os.path.join(workdir, "dev-log")
        self.receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.receiver.bind(self.path)
        fd = self.receiver.fileno()
        self.proc = subprocess.Popen(["taskset", "-c", "0", str(exe), self.path, str(fd)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     pass_fds=(fd,))
        self.n = {}

    def _ask(self, case, n):
        self.proc.stdin.write(f"{case} {n}\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"chanloop died (exit {self.proc.wait()})")
        return float(reply)

    def calibrate(self):
        """Calls per measurement for each case: about TARGET_MS of calls, untraced."""
        for c in CASES:
            ns = self._ask(c, 5000)
            self.n[c] = max(5000, int(TARGET_MS * 1e6 / ns) // 1000 * 1000)

    def measure(self, case):
        return self._ask(case, self.n[case])

    def measure_all(self):
        return {c: self.measure(c) for c in CASES}

    def syslog_sent(self):
        return int(self._ask("count", 0))

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.receiver.close()
        os.unlink(self.path)


class Floor(Served):
    """The floor tracer: this module with --serve-floor (bare.py --serve floor attaches one
    empty program per hook, and the kernel refuses the same program twice on one
    tracepoint: sys_enter_sendto/sendmsg are hooked by both probes now)."""

    def __init__(self):
        self.kind = "floor"
        self.proc = subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, "-m", "tests.bench.channels",
             "--serve-floor"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError("bench floor tracer failed to load")
        self.state = json.loads(line.split(" ", 1)[1])
        self.ids = {int(k): v for k, v in self._ask("ids").items()}


def serve_floor():
    """Empty programs on exactly the hooks of both probes' plans, the k-th program on a
    hook's k-th attachment; attach / detach / ids on request (bare.py's protocol)."""
    from collector.probes.kernel import import_bcc, mount_tracefs
    from collector.probes.detach import close_fds_parallel
    from tests.bench.bare import _plans, _prog_id, attach_fd, prog_type

    mount_tracefs()
    BPF = import_bcc()
    _probes, plans = _plans()
    hooks = [(st["kind"], st["tp"]) for p in plans for st in p.steps]
    depth = max(hooks.count(h) for h in hooks)
    b = BPF(text="".join(f"int empty{k}(void *ctx) {{ return 0; }}\n"
                         f"int raw{k}(void *ctx) {{ return 0; }}\n" for k in range(depth)))
    steps, seen = [], {}
    for kind, tp in hooks:
        k = seen.get((kind, tp), 0)
        steps.append((kind, tp, f"raw{k}" if kind == "raw" else f"empty{k}"))
        seen[(kind, tp)] = k + 1
    progs = {fn: b.load_func(fn, prog_type(BPF, kind)).fd for kind, _, fn in steps}
    ids = {_prog_id(fd): fn for fn, fd in progs.items()}
    print("ready " + json.dumps({"hooks": [tp for _, tp in hooks]}), flush=True)
    fds = []
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "attach":           # bcc's attach_tracepoint keeps one fd per hook
            fds += [attach_fd(progs[fn], kind, tp) for kind, tp, fn in steps]
        elif cmd == "detach":
            close_fds_parallel(fds)
            fds = []
        elif cmd == "ids":
            print(json.dumps(ids), flush=True)
            continue
        print("ok", flush=True)
    os._exit(0)            # bcc's clean-up would close the fds again


class SurgewatchRun:
    """A real `surgewatch run` per attach: start, settle, check its count, stop."""

    def __init__(self, workdir, loop):
        self.workdir, self.loop = workdir, loop
        self.daemon = None
        self.meta = None
        self.checks = []          # per pair: sent, counted, other paths of the loop's pid
        self.prog_counts = []     # tracing programs it loaded, per start

    def attach(self):
        before = set(_progs())
        self.daemon = Daemon(os.path.join(self.workdir, "run"), interval=INTERVAL,
                             stdout="msgpack", resets=True, cpu=1,
                             log_rules=f"syslog_sockets = [{json.dumps(self.loop.path)}]")
        rec, _ = self.daemon.attached()
        self.meta = self.meta or rec
        self.ids = {i: p for i, p in _progs().items()
                    if i not in before and p.get("type") in TRACING_TYPES}
        self.prog_counts.append(len(self.ids))
        self.sent0 = self.loop.syslog_sent()
        for c in CASES:           # every path once (the pipe's key reaches a drain) ...
            self.loop._ask(c, 1000)
        self.daemon.wait_stats(2)          # ... judged: the pipe is not a log from now on

    def _pipe_state(self):
        """In the kernel, after the measurements: the verdict on the loop's pipe (2: not a
        log) and how many count-map keys it has (0: its writes stop at the verdict)."""
        pid = self.loop.proc.pid
        fds = os.listdir(f"/proc/{pid}/fd")
        ino = next(int(t[6:-1]) for t in (os.readlink(f"/proc/{pid}/fd/{f}") for f in fds
                                          if int(f) > 2) if t.startswith("pipe:["))
        mine = {m for p in self.ids.values() for m in p.get("map_ids", ())}
        verdict, keys = None, 0
        for m in json.loads(subprocess.run(["bpftool", "-j", "map", "list"], capture_output=True,
                                           text=True, check=True).stdout):
            if m["id"] not in mine or m.get("name") not in ("verdicts", "counts0", "counts1"):
                continue
            dump = json.loads(subprocess.run(["bpftool", "-j", "map", "dump", "id", str(m["id"])],
                                             capture_output=True, text=True, check=True).stdout)
            for e in dump:
                k = e["formatted"]["key"]
                if m["name"] == "verdicts" and k["ino"] == ino:
                    verdict = e["formatted"]["value"]
                elif m["name"] != "verdicts" and k["tgid"] == pid and k["ino"] == ino:
                    keys += 1
        return {"verdict": verdict, "count_keys": keys}

    def detach(self):
        pipe = self._pipe_state()
        sent = self.loop.syslog_sent() - self.sent0
        self.daemon.wait_stats(2)          # every datagram sent is in a closed interval
        code = self.daemon.stop()
        if code != 0:
            raise RuntimeError(f"surgewatch run exited {code}: {self.daemon.err}")
        self.checks.append(self._count(sent) | {"pipe": pipe})
        self.daemon = None

    def _count(self, sent):
        pid, channel = self.loop.proc.pid, f"syslog:{self.loop.path}"
        counted, other = 0, {}
        for r in self.daemon.records:
            if r.get("type") != "rate":
                continue
            for p in r.get("paths", ()):
                if pid not in p.get("pids", ()):
                    continue
                if p["path"] == channel:
                    counted += p["writes"]
                else:
                    other[p["path"]] = other.get(p["path"], 0) + p["writes"]
        return {"sent": sent, "counted": counted, "other": other,
                "exact": counted == sent and not other}

    @staticmethod
    def pipe_ok(check):
        return check["pipe"] == {"verdict": 2, "count_keys": 0}   # SW_VERDICT_NOT_LOG


def _cpu_s(pids):
    return _proc_cpu(pids) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system   # reaped daemons too


def _foreign_programs(allowed):
    return [f"{i}:{p.get('name', '?')}" for i, p in _progs().items()
            if p.get("type") in TRACING_TYPES and i not in allowed]


def _one_round(loop, conds, pairs):
    """{condition: [(case, before, on, after)]}; the reason it is contaminated, or None."""
    out, why = {}, None
    for name, tr in conds.items():
        rows = []
        before = loop.measure_all()
        for _ in range(pairs):
            tr.attach()
            on = loop.measure_all()
            if name != "floor" and len(tr.ids) != tr.prog_counts[0]:
                why = why or f"surgewatch run loaded {len(tr.ids)} programs, first {tr.prog_counts[0]}"
            tr.detach()
            after = loop.measure_all()
            foreign = _foreign_programs(conds["floor"].ids)
            if foreign:
                why = why or f"foreign tracing programs {foreign}"
            rows += [(c, before[c], on[c], after[c]) for c in CASES]
            before = after
        out[name] = rows
    if _bpf_stats_enabled():
        why = why or "kernel.bpf_stats_enabled is 1"
    return out, why


def summarize(rounds):
    """Median paired delta per condition, case and VM mode (syscalls.summarize_pairs)."""
    return summarize_pairs(rounds, CASES)


def _probe_of(prog, map_names):
    names = {map_names.get(m) for m in prog.get("map_ids", ())}
    return "logwrites" if names & {"counts0", "verdicts", "sockpaths"} else "resets"


def _stats_pass(loop, conds):
    """bpf_stats: ns per run of each program on each case, each condition attached."""
    maps = json.loads(subprocess.run(["bpftool", "-j", "map", "list"], capture_output=True,
                                     text=True, check=True).stdout)
    per = {}
    for name, tr in conds.items():
        tr.attach()
        if name != "floor":
            maps = json.loads(subprocess.run(["bpftool", "-j", "map", "list"],
                                             capture_output=True, text=True, check=True).stdout)
        map_names = {m["id"]: m.get("name") for m in maps}
        try:
            with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
                f.write("1")
            try:
                for c in CASES:
                    b = _progs()
                    loop.measure(c)
                    a = _progs()
                    for pid in tr.ids:
                        runs = a.get(pid, {}).get("run_cnt", 0) - b.get(pid, {}).get("run_cnt", 0)
                        if runs <= 0:
                            continue
                        ns = a[pid].get("run_time_ns", 0) - b[pid].get("run_time_ns", 0)
                        prog = a[pid]
                        key = "empty" if name == "floor" else \
                            f"{prog.get('name')}[{_probe_of(prog, map_names)}]"
                        per.setdefault(name, {}).setdefault(c, {})[key] = {
                            "runs": runs, "per_call": runs / (loop.n[c] + WARM),
                            "ns_per_run": ns / runs}
            finally:
                with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
                    f.write("0")
        finally:
            tr.detach()
    return per


def run(workdir):
    os.sched_setaffinity(0, {1})
    end = time.monotonic() + 60          # another tool's programs may be on their way out
    while (_foreign_programs(set()) or _bpf_stats_enabled()) and time.monotonic() < end:
        time.sleep(1)
    foreign = _foreign_programs(set())
    if foreign or _bpf_stats_enabled():
        raise RuntimeError(f"bench channels: not measuring, foreign tracing programs "
                           f"{foreign} or bpf_stats on")
    loop = ChanLoop(workdir)
    conds = {}
    try:
        loop.calibrate()
        conds["floor"] = Floor()
        conds["surgewatch"] = SurgewatchRun(workdir, loop)
        kept, dirty, notes = [], [], []
        t_start = time.monotonic()
        attempts = 0
        while len(kept) < ROUNDS and attempts < 2 * ROUNDS and \
                (attempts < ROUNDS or time.monotonic() - t_start < BUDGET_S):
            attempts += 1
            pids = [loop.proc.pid, conds["floor"].proc.pid]
            busy0, ours0, own0, t0 = _cpu_busy(), _cpu_s(pids), _own_cpu_s(), time.monotonic()
            rnd, why = _one_round(loop, conds, PAIRS)
            wall = time.monotonic() - t0
            busy = (_cpu_busy() - busy0) / os.sysconf("SC_CLK_TCK")
            foreign_cpu = (busy - (_cpu_s(pids) - ours0) - (_own_cpu_s() - own0)) / wall
            if not why and foreign_cpu > FOREIGN_CPU_MAX:
                why = f"foreign CPU {foreign_cpu:.0%} of a CPU"
            notes.append({"attempt": attempts, "foreign_cpu": round(foreign_cpu, 4),
                          "wall_s": round(wall, 2), "contaminated": why})
            (dirty if why else kept).append(rnd)
            print(f"  channels: round {attempts}: {why or 'clean'} (foreign CPU "
                  f"{foreign_cpu:.1%}, {wall:.0f} s)", file=sys.stderr, flush=True)
        stats = _stats_pass(loop, conds)
        sw = conds["surgewatch"]
        out = {"clean": summarize(kept) if kept else None,
               "all": summarize(kept + dirty), "rounds_kept": len(kept),
               "rounds": notes, "pairs": PAIRS, "n": loop.n, "bpf_stats": stats,
               "counts": sw.checks, "programs_loaded": sw.prog_counts,
               "probes": (sw.meta or {}).get("probes"), "raw": kept + dirty}
    finally:
        for name, tr in conds.items():
            if name == "floor":
                tr.close()
            elif tr.daemon is not None:
                tr.daemon.stop()
        loop.close()
    return out


def report(r):
    print(f"\n-- datagram channels and pipes, paired method ({r['rounds_kept']} clean rounds "
          f"of {len(r['rounds'])}, {r['pairs']} pairs per condition; ns per call, median "
          "paired delta)")
    summary = r["clean"] or r["all"]
    if r["clean"] is None:
        print("   NO CLEAN ROUND: figures below are from contaminated rounds")
    by = summary["by_tracer"]
    floor, sw = by.get("floor", {}), by.get("surgewatch", {})
    for c in CASES:
        for mode in ("fast", "slow", "all"):
            f, s = floor.get(c, {}).get(mode), sw.get(c, {}).get(mode)
            if not f or not s:
                continue
            print(f"   {LABELS[c]:42} [{mode}] untraced {s['base_ns']:7.0f} ns; floor "
                  f"{f['delta_ns']:+6.1f} (n={f['n']}); surgewatch {s['delta_ns']:+6.1f} "
                  f"(n={s['n']}), above floor {s['delta_ns'] - f['delta_ns']:+6.1f}")
    def above(c, mode="fast"):
        f, s = floor.get(c, {}).get(mode), sw.get(c, {}).get(mode)
        return s["delta_ns"] - f["delta_ns"] if f and s else None

    for mode in ("fast", "slow", "all"):
        pipe, null = above("pipe", mode), above("null", mode)
        if pipe is not None and null is not None:
            print(f"   [{mode}] the pipe's own cost (pipe minus /dev/null, above the floor): "
                  f"{pipe - null:+.1f} ns")
    print("   bpf_stats, ns per run (net: minus the empty program's on the same case; "
          "programs that ran >= 0.5 times per call; runs/call counts the untimed drains' "
          "recv calls too)")
    empty = r["bpf_stats"].get("floor", {})
    for c, progs in r["bpf_stats"].get("surgewatch", {}).items():
        e = empty.get(c, {}).get("empty", {}).get("ns_per_run", 0.0)
        cells = [f"{prog} {st['ns_per_run']:.1f} (net {st['ns_per_run'] - e:+.1f}, "
                 f"{st['per_call']:.2f}/call)"
                 for prog, st in sorted(progs.items()) if st["per_call"] >= 0.5]
        print(f"     {c:9} empty {e:5.1f}; " + "; ".join(cells))
    exact = all(ch["exact"] for ch in r["counts"])
    print(f"   counted: {sum(ch['counted'] for ch in r['counts']):,} of "
          f"{sum(ch['sent'] for ch in r['counts']):,} syslog datagrams sent over "
          f"{len(r['counts'])} daemon runs, other paths of the loop counted: "
          f"{sorted({p for ch in r['counts'] for p in ch['other']}) or 'none'} -> "
          f"{'exact' if exact else 'NOT EXACT'}")
    pipes = [ch["pipe"] for ch in r["counts"]]
    print(f"   the pipe in the kernel during the measurements: verdict not-a-log and no count "
          f"key in {sum(map(SurgewatchRun.pipe_ok, r['counts']))} of {len(pipes)} daemon runs"
          + ("" if all(map(SurgewatchRun.pipe_ok, r["counts"])) else f" ({pipes})"))
    print(f"   programs loaded per `surgewatch run`: {sorted(set(r['programs_loaded']))}; "
          f"calls per measurement: {r['n']}")


def main():
    if "--serve-floor" in sys.argv[1:]:
        return serve_floor()
    if os.geteuid() != 0:
        sys.exit("channels: run as root (bpf, bpftool, bpf_stats)")
    with tempfile.TemporaryDirectory(prefix="sw-chan-") as d:
        r = run(d)
    report(r)
    out = Path(__file__).resolve().parents[2] / "build" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "channels.json").write_text(json.dumps(r, indent=1, default=str))
    print(f"\n(results: {out / 'channels.json'})")


if __name__ == "__main__":
    main()
