"""collector.host.keycache: a key's (service, path) is kept across intervals and dropped
exactly when its process, comm, cgroup or the rules change."""
import errno
import subprocess
import sys

import pytest

from collector.aggregate.logrates import aggregate_interval, rate_bodies
from collector.errors import NoSuchProcess
from collector.host.destinations import NOT_LOG, UNRESOLVED
from collector.host.keycache import KeyCache
from collector.host.pidwatch import PidWatch
from collector.host.procfs import ProcFS
from collector.host.services import ServiceResolver
from collector.records.model import LogWrite
from collector.probes.logwrite_counts import KEY_LAYOUT, VAL_LAYOUT, RawCounts, WriteCount
from collector.pipeline.runtime import Collector
from tests.support.probes import WriteProbeDouble


class FakeProc:
    root = "/fixture"          # not the live /proc: no pidfds

    def __init__(self, table):
        self.table = table       # pid -> (start_time, cgroup lines)
        self.stat_reads = 0

    def start_time(self, pid):
        self.stat_reads += 1
        if pid not in self.table:
            raise NoSuchProcess(pid)
        return self.table[pid][0]

    def cgroup(self, pid):
        if pid not in self.table:
            raise NoSuchProcess(pid)
        return self.table[pid][1]


class Resolver:
    def __init__(self, paths):
        self.paths = paths       # ino -> path | NOT_LOG | UNRESOLVED
        self.rules = object()
        self.asked = 0

    def start_drain(self):
        pass

    def destination(self, c):
        self.asked += 1
        return self.paths[c.ino]


def wc(pid, fd, ino, writes, comm="app", cgroup=7):
    return WriteCount(pid, fd, 1, ino, 0, 1, writes, writes * 10, cgroup, comm)


def pack(counts):
    keys = b"".join(KEY_LAYOUT.pack(c.tgid, c.fd, c.dev, c.kind, c.ino, c.gen, 0) for c in counts)
    vals = b"".join(VAL_LAYOUT.pack(c.writes, c.bytes, c.cgroup_id, c.comm.encode())
                    for c in counts)
    return RawCounts(keys, vals)


def test_raw_counts_decode_to_the_same_write_counts():
    counts = [wc(10, 3, 1, 5), wc(11, 4, 2, 7, comm="sh", cgroup=9)]
    raw = pack(counts)
    assert len(raw) == 2 and list(raw) == counts and raw.count(1) == counts[1]


def run(cache, services, counts):
    services.start_drain()
    accs, unresolved = cache.enrich(pack(counts), object())    # the kernel's bytes
    services.end_drain()
    return rate_bodies(accs, 0, 1.0), unresolved


def setup(table=None, paths=None):
    proc = FakeProc(table or {10: (100, ["0::/system.slice/a.service"]), 11: (5, ["0::/"])})
    services = ServiceResolver(proc)
    resolver = Resolver(paths or {1: "/var/log/a.log", 2: "/var/log/b.log", 3: NOT_LOG,
                                  4: UNRESOLVED})
    return proc, services, resolver, KeyCache(resolver, services)


def test_known_keys_are_not_judged_again_and_sums_are_exact():
    proc, services, resolver, cache = setup()
    counts = [wc(10, 3, 1, 5), wc(10, 4, 2, 7), wc(11, 3, 1, 2, comm="sh"), wc(10, 5, 3, 9),
              wc(10, 6, 4, 4)]
    bodies, unresolved = run(cache, services, counts)
    assert unresolved == 4
    asked = resolver.asked
    for _ in range(3):
        again, unresolved = run(cache, services, counts)
        assert again == bodies and unresolved == 4
    assert resolver.asked == asked + 3           # only the unresolved key, each time
    writes = [LogWrite(c.tgid, c.comm, "a.service" if c.tgid == 10 else "sh",
                       {1: "/var/log/a.log", 2: "/var/log/b.log"}[c.ino], c.writes, c.bytes)
              for c in counts if c.ino in (1, 2)]
    assert bodies == aggregate_interval(writes, 0, 1.0)


def test_pid_reuse_without_pidfds_is_seen_at_the_next_drain():
    proc, services, resolver, cache = setup()
    run(cache, services, [wc(10, 3, 1, 5)])
    proc.table[10] = (250, ["0::/system.slice/b.service"])    # a died, b got its pid
    bodies, _ = run(cache, services, [wc(10, 3, 1, 6)])
    assert [(b["service"], b["log_writes"]) for b in bodies] == [("b.service", 6)]


def test_start_time_read_once_per_process_per_drain_without_pidfds():
    proc, services, resolver, cache = setup()
    counts = [wc(10, fd, 1 + fd % 2, 1) for fd in range(50)]
    run(cache, services, counts)
    reads = proc.stat_reads
    run(cache, services, counts)
    assert proc.stat_reads - reads == 1


def test_comm_and_cgroup_changes_recompute_the_service():
    proc, services, resolver, cache = setup()
    assert run(cache, services, [wc(11, 3, 1, 1, comm="bash")])[0][0]["service"] == "bash"
    assert run(cache, services, [wc(11, 3, 1, 1, comm="python3")])[0][0]["service"] \
        == "python3"
    proc.table[11] = (5, ["0::/system.slice/run-u7.scope"])
    assert run(cache, services, [wc(11, 3, 1, 1, comm="python3", cgroup=8)])[0][0][
        "service"] == "run-u7.scope"


def test_new_rules_forget_every_answer():
    proc, services, resolver, cache = setup()
    run(cache, services, [wc(10, 3, 1, 1)])
    resolver.paths[1] = NOT_LOG
    assert run(cache, services, [wc(10, 3, 1, 1)])[0] != []      # still the cached verdict
    resolver.rules = object()
    assert run(cache, services, [wc(10, 3, 1, 1)])[0] == []


def test_gone_process_is_named_each_time_and_not_cached():
    proc, services, resolver, cache = setup(table={})
    bodies, _ = run(cache, services, [wc(42, 3, 1, 3, comm="short")])
    assert bodies[0]["service"] == "short" and not cache._keys


def test_pidfd_reports_a_real_exit_and_its_keys_are_forgotten():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        services = ServiceResolver(ProcFS())
        resolver = Resolver({1: "/var/log/a.log"})
        cache = KeyCache(resolver, services, watch=PidWatch(limit=8))
        run(cache, services, [wc(child.pid, 3, 1, 1, comm="python3")])
        assert child.pid in cache._procs and cache._procs[child.pid].fd is not None
        assert len(cache._keys) == 1          # the key (tuple or kernel bytes) is cached
        child.kill()
        child.wait()
        assert [p.pid for p in cache.watch.exited()] == [child.pid]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        cache.watch.close()


def test_exit_seen_at_drain_drops_the_process_entry():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    services = ServiceResolver(ProcFS())
    resolver = Resolver({1: "/var/log/a.log", 2: "/var/log/b.log"})
    cache = KeyCache(resolver, services, watch=PidWatch(limit=8))
    try:
        run(cache, services, [wc(child.pid, 3, 1, 1, comm="python3")])
        child.kill()
        child.wait()
        run(cache, services, [wc(1, 99, 2, 1, comm="init")])       # any non-empty drain
        assert child.pid not in cache._procs
        assert (child.pid, 3, 1, 1, 0) not in cache._keys
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        cache.watch.close()


def test_collector_last_writes_are_per_key():
    proc, services, resolver, _ = setup()
    counts = [wc(10, 3, 1, 5), wc(10, 4, 1, 2), wc(10, 6, 4, 4)]
    c = Collector(WriteProbeDouble(counts), resolver, services, host="h")
    c.begin()
    rates, stats = c.interval()[:2]
    assert stats["unresolved_writes"] == 4
    assert rates[0]["log_writes"] == 7 and rates[0]["paths"][0]["pids"] == [10]
    assert c.last_writes == [LogWrite(10, "app", "a.service", "/var/log/a.log", 5, 50),
                             LogWrite(10, "app", "a.service", "/var/log/a.log", 2, 20)]


class OutOfFds(FakeProc):
    """A /proc whose reads fail with EMFILE while `failing` (the daemon at its fd limit)."""

    failing = True

    def _check(self):
        from collector.errors import HostResourceError
        if self.failing:
            raise HostResourceError("cgroup of process 10", errno.EMFILE)

    def start_time(self, pid):
        self._check()
        return super().start_time(pid)

    def cgroup(self, pid):
        self._check()
        return super().cgroup(pid)


def test_out_of_fds_is_an_unresolved_key_counted_then_resolved_next_interval():
    """EMFILE while naming a new writer (a neighbour holds the daemon's fds): its writes
    are unresolved that interval and counted as a resource error, nothing is cached (not
    named by comm: it would pass as another service), and the next interval names it."""
    proc = OutOfFds({10: (100, ["0::/system.slice/a.service"])})
    services = ServiceResolver(proc)
    resolver = Resolver({1: "/var/log/a.log"})
    cache = KeyCache(resolver, services)
    bodies, unresolved = run(cache, services, [wc(10, 3, 1, 5), wc(10, 4, 1, 2)])
    assert (bodies, unresolved) == ([], 7)
    assert cache.take_resource_errors() == 2 and cache.take_resource_errors() == 0
    assert not cache._keys
    proc.failing = False
    bodies, unresolved = run(cache, services, [wc(10, 3, 1, 6)])
    assert unresolved == 0 and cache.take_resource_errors() == 0
    assert [(b["service"], b["log_writes"]) for b in bodies] == [("a.service", 6)]


# A process's last writes are drained after it exited (a writer stopping between two
# drains): /proc no longer tells its uid. The hostile name-spray test saw every name of
# nobody's sprayer as owner "unknown" in the interval after it stopped (an unprotected
# owner of its own, with its own share of slots). The owner read while that very process
# lived is kept.

def owners_of(cache, services, counts):
    bodies, _ = run(cache, services, counts)
    from collector.aggregate.slots import fold_rates
    return {b["service"]: b["owner"] for b in fold_rates(bodies, cache.owners)[0]}


class NoUnitProcFS(ProcFS):
    """The real /proc, but every process in the root cgroup: services are named by comm
    here whatever started the tests (under systemd, the VM, they sit in ssh.service)."""

    def cgroup(self, pid):
        super().cgroup(pid)             # still fails as the real one does for a gone pid
        return ["0::/"]


def test_last_writes_of_an_exited_process_keep_its_owner_pidfd():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    services = ServiceResolver(NoUnitProcFS())
    resolver = Resolver({1: "/var/log/a.log", 2: "/var/log/b.log"})
    cache = KeyCache(resolver, services, watch=PidWatch(limit=8))
    try:
        alive = owners_of(cache, services, [wc(child.pid, 3, 1, 1, comm="sw0001")])
        assert alive["sw0001"] != "unknown"       # uid:N, or what its cgroup tells
        child.kill()
        child.wait()
        # the same key, and a new name (a rename after the last drain) on another fd
        gone = owners_of(cache, services, [wc(child.pid, 3, 1, 2, comm="sw0001"),
                                           wc(child.pid, 4, 2, 1, comm="sw0002")])
        assert gone == {"sw0001": alive["sw0001"], "sw0002": alive["sw0001"]}
        assert child.pid not in cache._procs              # its exit was seen by its pidfd
        # a later drain: that exit is history; a pid never seen alive has no owner
        assert owners_of(cache, services, [wc(child.pid, 5, 2, 1, comm="sw0003")]) == \
            {"sw0003": "unknown"}
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        cache.watch.close()


def proc_tree(tmp_path, pid, start, uid):
    d = tmp_path / str(pid)
    d.mkdir()
    (d / "stat").write_text(f"{pid} (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0\n")
    (d / "cgroup").write_text("0::/\n")
    (d / "status").write_text(f"Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    return d


def test_last_writes_of_an_exited_process_keep_its_owner_without_pidfds(tmp_path):
    d = proc_tree(tmp_path, 42, 777, 65534)
    services = ServiceResolver(ProcFS(str(tmp_path)))     # not /proc: no pidfds
    cache = KeyCache(Resolver({1: "/var/log/a.log"}), services)
    assert owners_of(cache, services, [wc(42, 3, 1, 1, comm="sw0001")]) == \
        {"sw0001": "uid:65534"}
    for f in d.iterdir():
        f.unlink()
    d.rmdir()                                             # exited (and reaped)
    assert owners_of(cache, services, [wc(42, 3, 1, 1, comm="sw0001")]) == \
        {"sw0001": "uid:65534"}
    # not seen alive at the previous drain: its pid may be another's; not guessed
    assert owners_of(cache, services, [wc(42, 3, 1, 1, comm="sw0002")]) == \
        {"sw0002": "unknown"}


def test_an_exited_process_in_another_cgroup_is_not_given_the_old_owner(tmp_path):
    d = proc_tree(tmp_path, 42, 777, 65534)
    services = ServiceResolver(ProcFS(str(tmp_path)))
    cache = KeyCache(Resolver({1: "/var/log/a.log"}), services)
    owners_of(cache, services, [wc(42, 3, 1, 1, comm="sw0001", cgroup=7)])
    for f in d.iterdir():
        f.unlink()
    d.rmdir()
    assert owners_of(cache, services, [wc(42, 3, 1, 1, comm="sw0001", cgroup=8)]) == \
        {"sw0001": "unknown"}
