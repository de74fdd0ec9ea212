"""The userspace half of one interval, in-process and deterministic (issue 13).

A real collector.pipeline.runtime.Collector (real DestinationResolver, ServiceResolver, CgroupIndex,
ProcFS, reset stage and alert stage) with FAKE probes: the log-write probe's drain returns
PROCS x FILES_EACH keys that name real processes holding real open files under a temp
directory, unpacked from packed bytes with the probe's own struct layouts as the real
drain does. Every interval's records go to all four real sinks as `surgewatch run` feeds
them (msgpack on a stdout-like file, segments, the unix socket with one subscriber,
Prometheus). Measured with time.process_time() (every thread of this process):

- busy: CPU per interval over STEADY intervals after WARMUP, per key; the fake drain's
  own share is reported apart (it stands for the probe's unpacking, not for this stage);
- idle: CPU of an interval whose drain is empty, and what it allocates (tracemalloc);
- exactness: every interval's rate records add up to what the drain returned.

    python -m tests.bench.interval [--procs 200] [--files 50] [--intervals 30]
                                   [--services 1] [--profile] [--json]

No kernel, no bcc; needs /proc and a cgroup2 mount like the real collector. Method and
recorded figures: docs/performance.md ("Userspace per key and the idle interval").
"""
import argparse
import gc
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

from collector.probes.logwrite_counts import KEY_LAYOUT, VAL_LAYOUT, LogWriteDrain, RawCounts
from tests.support.probes import ResetProbeDouble, WriteProbeDouble

LINE_BYTES = 45

# Holds files open and sleeps: forks `procs` children, each opening `files` log files of its
# own (and renaming itself so that services can differ), prints their pids and waits.
HOLDER = r"""
import ctypes, os, signal, sys
d, procs, files, nsvc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
libc = ctypes.CDLL(None)
pids = []


def stop(*_):
    for p in pids:
        os.kill(p, signal.SIGKILL)
    os._exit(0)


signal.signal(signal.SIGTERM, stop)
for i in range(procs):
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        name = b"fanout" if nsvc <= 1 else b"fan%d" % (i % nsvc)
        libc.prctl(15, ctypes.c_char_p(name), 0, 0, 0)     # PR_SET_NAME
        for j in range(files):
            os.open(os.path.join(d, f"p{i}-{j}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                    0o644)
        signal.pause()
        os._exit(0)
    pids.append(pid)
print(" ".join(map(str, pids)), flush=True)
for p in pids:
    os.waitpid(p, 0)
"""

SUBSCRIBER = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
sys.stdout.write("c\n"); sys.stdout.flush()
while s.recv(1 << 20):
    pass
"""


class FakeLogWriteProbe(WriteProbeDouble):
    """LogWriteProbe's interface as runtime.Collector uses it; collect() copies `keys`."""

    def __init__(self, max_keys=65536):
        super().__init__()
        self.max_keys = max_keys
        self.attached = ["syscalls:sys_enter_write"]
        self.keys = memoryview(b"")
        self.vals = memoryview(b"")
        self.drain_cpu = 0.0
        self.verdicts = 0

    def load(self, rows):
        """rows: [(tgid, fd, dev, kind, ino, gen, writes, bytes, cgroup_id, comm)]"""
        self.keys = memoryview(b"".join(KEY_LAYOUT.pack(t, fd, dev, kind, ino, gen, 0)
                                        for t, fd, dev, kind, ino, gen, *_ in rows))
        self.vals = memoryview(b"".join(VAL_LAYOUT.pack(w, b, cg, comm.encode())
                                        for *_, w, b, cg, comm in rows))

    def set_verdict(self, dev, gen, ino, is_log):
        self.verdicts += 1

    def collect(self):
        # what LogWriteProbe.collect() returns: the kernel's bytes, copied out of the
        # batch buffers (RawCounts)
        t0 = time.process_time()
        out = LogWriteDrain(RawCounts(bytes(self.keys), bytes(self.vals)), None)
        self.drain_cpu += time.process_time() - t0
        return out


class FakeResetProbe(ResetProbeDouble):
    def __init__(self):
        super().__init__()
        self.attached = ["tcp:tcp_send_reset", "tcp:tcp_receive_reset"]


def _cgroup_id(pid):
    from collector.host.cgroups import cgroup2_mount

    mount = cgroup2_mount()
    with open(f"/proc/{pid}/cgroup") as f:
        path = next(line.split(":", 2)[2].strip() for line in f if line.startswith("0::"))
    return os.stat(mount[0] + path).st_ino if mount else 0


def key_rows(pids, logdir, writes=10):
    """One row per open file under logdir of each pid, from the live fd table."""
    from collector.host.destinations import KIND_REGULAR, inode_generation, kernel_dev

    rows = []
    for pid in pids:
        cg = _cgroup_id(pid)
        with open(f"/proc/{pid}/comm") as f:
            comm = f.read().rstrip("\n")
        for name in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
            link = f"/proc/{pid}/fd/{name}"
            if not os.readlink(link).startswith(logdir + "/"):
                continue
            st = os.stat(link)
            rows.append((pid, int(name), kernel_dev(st.st_dev), KIND_REGULAR, st.st_ino,
                         inode_generation(link), writes, writes * LINE_BYTES, cg, comm))
    return rows


class Bench:
    def __init__(self, workdir, procs, files, services):
        self.workdir = workdir
        self.logdir = os.path.join(workdir, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.holder = subprocess.Popen([sys.executable, "-c", HOLDER, self.logdir, str(procs),
                                        str(files), str(services)],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        self.pids = [int(p) for p in self.holder.stdout.readline().split()]
        deadline = time.monotonic() + 60
        rows = []
        while time.monotonic() < deadline:         # every child has opened its files
            rows = key_rows(self.pids, self.logdir)
            if len(rows) == procs * files:
                break
            time.sleep(0.2)
        self.rows = rows
        self.subscriber = None
        self.outputs = {}

    def build(self):
        from collector.pipeline.alerts import AlertStage
        from collector.host.cgroups import CgroupIndex
        from collector.host.destinations import DestinationResolver
        from collector.host.logdest import LogRules
        from collector.host.procfs import ProcFS
        from collector.host.services import ServiceResolver
        from collector.host.sockdiag import ListenerLookup
        from collector.pipeline.resets import ResetAttributor
        from collector.host.unixsock import journald_stream_clients
        from collector.pipeline.resets import ResetStage
        from collector.pipeline.runtime import Collector

        # wired as collector.commands.snapshot.build_collector wires the real pipeline
        self.probe = FakeLogWriteProbe()
        self.probe.load(self.rows)
        procfs = ProcFS()
        services = ServiceResolver(procfs, CgroupIndex())
        rules = LogRules(dirs=(self.logdir + "/",))
        resolver = DestinationResolver(procfs, rules, self.probe.set_verdict,
                                       journald_stream_clients)
        resolver.replay()
        stage = ResetStage(FakeResetProbe(), ResetAttributor(services, ListenerLookup(procfs)),
                           socket.gethostname())
        stage.set_max_records(100)
        gc.freeze()
        self.collector = Collector(self.probe, resolver, services, resets=stage)
        self.alerts = AlertStage(self.collector.host)
        self._open_sinks()
        self.collector.report_from(self.outputs["segments"])     # as run reports its outputs' drops
        self.collector.begin()
        meta = self.collector.meta(1.0, "run", ["bench"])
        for sink in self.outputs.values():
            if hasattr(sink, "set_meta"):
                sink.set_meta(meta)
        self._write([meta])

    def _open_sinks(self):
        # as collector.commands.run.Daemon._make_output builds them with every output on
        from collector.sinks.stdout import StdoutSink
        from collector.sinks.prometheus import PrometheusSink
        from collector.sinks.segments import SegmentStore
        from collector.sinks.unixsock import UnixSocketSink

        self._stdout = open(os.path.join(self.workdir, "stdout.msgpack"), "wb")
        sock = os.path.join(self.workdir, "stream.sock")
        self.outputs = {
            "stdout": StdoutSink("msgpack", self._stdout),
            "segments": SegmentStore(os.path.join(self.workdir, "segments")),
            "socket": UnixSocketSink(sock),
            "prometheus": PrometheusSink("127.0.0.1", 0),
        }
        self.subscriber = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, sock],
                                           stdout=subprocess.PIPE, text=True)
        assert self.subscriber.stdout.readline() == "c\n"
        deadline = time.monotonic() + 5
        while self.outputs["socket"].subscribers() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)

    def _write(self, records):
        for sink in self.outputs.values():
            sink.write_interval(records)

    def one_interval(self):
        """What Daemon._run's on_interval does with one interval; returns the rates."""
        c = self.collector
        iv = c.interval()
        rates, stats = iv.rates, iv.stats
        resets = iv.reset_records
        alerts = self.alerts.interval(rates, stats, resets)
        self._write(rates + resets + alerts + [stats])
        return rates, stats

    def close(self):
        for sink in self.outputs.values():
            sink.close()
        self._stdout.close()
        for p in (self.subscriber, self.holder):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def _check_exact(rates, expect_writes, expect_bytes):
    w = sum(r["log_writes"] for r in rates)
    b = sum(r["log_bytes"] for r in rates)
    pw = sum(p["writes"] for r in rates for p in r["paths"])
    if not (w == pw == expect_writes and b == expect_bytes):
        raise AssertionError(f"not exact: rate records {w} writes ({pw} in paths) / {b} "
                             f"bytes, drained {expect_writes} / {expect_bytes}")


def _allocations(fn):
    """(peak bytes allocated during fn() above what was live before, bytes still held after)."""
    tracemalloc.start()
    try:
        fn()                      # first call under tracing warms tracemalloc's own tables
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before, after - before


def measure(bench, intervals=30, warmup=3, idle_intervals=30, profile=False):
    rows = bench.rows
    expect_w = sum(r[6] for r in rows)
    expect_b = sum(r[7] for r in rows)
    probe = bench.probe
    for _ in range(warmup):
        bench.one_interval()
    cpu, drain = [], []
    prof = None
    if profile:
        import cProfile
        prof = cProfile.Profile()
    for _ in range(intervals):
        d0 = probe.drain_cpu
        t0 = time.process_time()
        if prof:
            prof.enable()
        rates, stats = bench.one_interval()
        if prof:
            prof.disable()
        cpu.append(time.process_time() - t0)
        drain.append(probe.drain_cpu - d0)
        _check_exact(rates, expect_w, expect_b)
    # one more busy interval under tracemalloc: what it allocates at its peak, what it keeps
    busy_peak, _ = _allocations(bench.one_interval)

    # idle: nothing written anywhere
    saved = probe.keys, probe.vals
    probe.keys, probe.vals = memoryview(b""), memoryview(b"")
    bench.one_interval()
    idle = []
    for _ in range(idle_intervals):
        t0 = time.process_time()
        bench.one_interval()
        idle.append(time.process_time() - t0)
    idle_peak, idle_kept = _allocations(bench.one_interval)
    probe.keys, probe.vals = saved

    from collector.records.stream import encode
    size = sum(len(encode(r)) for r in rates)
    keys = len(rows)
    out = {
        "keys": keys, "procs": len(bench.pids), "intervals": intervals,
        "services": len(rates),
        "cpu_ms_median": 1000 * statistics.median(cpu),
        "cpu_ms_min": 1000 * min(cpu),
        "us_per_key": 1e6 * statistics.median(cpu) / keys,
        "us_per_key_min": 1e6 * min(cpu) / keys,
        "fake_drain_us_per_key": 1e6 * statistics.median(drain) / keys,
        "us_per_key_without_drain": 1e6 * statistics.median(
            [c - d for c, d in zip(cpu, drain)]) / keys,
        "rate_record_bytes": size,
        "paths_in_records": sum(len(r["paths"]) for r in rates),
        "busy_alloc_peak_kib": busy_peak / 1024,
        "idle_cpu_us_median": 1e6 * statistics.median(idle),
        "idle_cpu_us_min": 1e6 * min(idle),
        "idle_alloc_peak_kib": idle_peak / 1024,
        "idle_alloc_kept_kib": idle_kept / 1024,
        "exact": True,
    }
    if prof:
        import io
        import pstats
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
        out["profile"] = s.getvalue()
    return out


def run(workdir, procs=200, files=50, intervals=30, services=1, profile=False):
    bench = Bench(workdir, procs, files, services)
    try:
        if len(bench.rows) != procs * files:
            raise RuntimeError(f"only {len(bench.rows)} of {procs * files} files open")
        bench.build()
        return measure(bench, intervals=intervals, profile=profile)
    finally:
        bench.close()


def report(r):
    def line(case, figure, target=""):
        print(f"{case:44} {figure:>30}   {target}")

    print(f"\n-- interval (in-process): {r['keys']:,} keys over {r['procs']} processes, "
          f"{r['services']} service(s), every sink on, {r['intervals']} intervals")
    line("   CPU per interval (median / min)", f"{r['cpu_ms_median']:.1f} / "
         f"{r['cpu_ms_min']:.1f} ms")
    line("   CPU per key (median / min)", f"{r['us_per_key']:.2f} / "
         f"{r['us_per_key_min']:.2f} us", "target <= 2 us/key")
    line("   ... of which the fake drain (unpacking)", f"{r['fake_drain_us_per_key']:.2f} us")
    line("   ... without it", f"{r['us_per_key_without_drain']:.2f} us")
    line("   rate records: bytes / paths carried", f"{r['rate_record_bytes']:,} / "
         f"{r['paths_in_records']:,}")
    line("   busy interval: allocation peak", f"{r['busy_alloc_peak_kib']:,.0f} KiB")
    line("   idle interval CPU (median / min)", f"{r['idle_cpu_us_median']:.0f} / "
         f"{r['idle_cpu_us_min']:.0f} us")
    line("   idle interval: alloc peak / kept", f"{r['idle_alloc_peak_kib']:.1f} / "
         f"{r['idle_alloc_kept_kib']:.1f} KiB")
    line("   rate records sum to the drain", "exact" if r["exact"] else "NOT EXACT")
    if r.get("profile"):
        print(r["profile"])


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tests.bench.interval")
    ap.add_argument("--procs", type=int, default=200)
    ap.add_argument("--files", type=int, default=50)
    ap.add_argument("--intervals", type=int, default=30)
    ap.add_argument("--services", type=int, default=1)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="sw-bench-interval-")
    try:
        r = run(work, a.procs, a.files, a.intervals, a.services, a.profile)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        print(json.dumps(r, indent=1))
    else:
        report(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
