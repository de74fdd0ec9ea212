"""The interval path's records are byte for byte what they were before its per-key
speed-ups (issue 26, docs/performance.md "Daemon CPU per key"): a fixed drain sequence of
thousands of keys through a real Collector (KeyCache, rate_bodies, the service fold, the
msgpack codec), its rate records' bytes hashed against a digest taken with the code before
the change; and every interval sums exactly to its drain (the reference aggregation)."""
import hashlib
import random

from collector.aggregate.logrates import aggregate_interval
from collector.host.destinations import NOT_LOG, UNRESOLVED
from collector.host.services import ServiceResolver
from collector.pipeline.runtime import Collector
from collector.probes.logwrite_counts import WriteCount
from collector.records.model import LogWrite
from collector.records.stream import encode
from tests.support.probes import WriteProbeDouble
from tests.unit.test_keycache import FakeProc, Resolver

# sha256 of every interval's records (below), taken at da229d8, before the change; the
# records are hashed with that commit's stream version (schema 1.11 added a stats field
# only: the rate records' bodies must not have moved)
GOLDEN_SCHEMA = "1.10"
GOLDEN = {20: "2a233bd76ac4955bf3354dac95fc29d4739dccfce441d37040e7bb66113ee275",
          0: "8c41af9f452fe174b7b0d25b626729084d8da1689066ef08c6e88c8d4d979d49"}

UNITS = ("a.service", "b.service", "c.service")


def _table(gone=()):
    """pid -> (start time, cgroup lines): 60 processes in three units; `gone` exited."""
    return {pid: (1000 + pid, [f"0::/system.slice/{UNITS[pid % 3]}"])
            for pid in range(100, 160) if pid not in gone}


def _paths():
    """ino -> path, NOT_LOG or UNRESOLVED: most inodes logs, some shared by processes."""
    out = {}
    for ino in range(1, 1300):
        out[ino] = NOT_LOG if ino % 17 == 0 else UNRESOLVED if ino % 29 == 0 \
            else f"/var/log/app/{ino % 700:04d}.log"
    return out


def _drain(seed, comm_of=None, cgroup_of=None, extra=()):
    """~3,000 keys: each process 50 fds on inodes shared now and then; writes in a narrow
    range so many paths tie at the top-20 floor; some keys with nothing written."""
    rng = random.Random(seed)
    out = []
    for pid in range(100, 160):
        comm = (comm_of or {}).get(pid, f"app{pid % 5}")
        cg = (cgroup_of or {}).get(pid, 7 + pid % 3)
        for fd in range(3, 53):
            ino = 1 + (pid * 7 + fd * 13) % 1299
            w = rng.choice((0, 1, 9, 10, 10, 10, 11, 40)) if fd % 11 else 10
            out.append(WriteCount(pid, fd, 1, ino, 0, 1, w, w * 37 + (fd % 3), cg, comm))
    return out + list(extra)


def _sequence():
    """Four intervals: steady, counts changed and a comm and a cgroup changed, new keys
    and a process gone, and an empty one."""
    gone = WriteCount(400, 3, 1, 5, 0, 1, 6, 60, 9, "short")
    return [(_drain(1), ()),
            (_drain(2, comm_of={101: "renamed"}, cgroup_of={102: 8}), ()),
            (_drain(3, extra=[gone]), (103,)),
            ([], ())]


def _run(max_paths):
    proc = FakeProc(_table())
    services = ServiceResolver(proc)
    probe = WriteProbeDouble()
    probe.max_keys = 4096
    clock = iter(float(i) for i in range(1000))
    c = Collector(probe, Resolver(_paths()), services, host="h", clock=lambda: next(clock),
                  wallclock=lambda: 1.7e9)
    c.max_paths = max_paths
    c.begin()
    digest = hashlib.sha256()
    intervals = []
    for counts, gone in _sequence():
        proc.table = _table(gone)
        probe.counts = counts
        rates = c.interval().rates
        for r in rates:
            digest.update(encode({**r, "v": GOLDEN_SCHEMA}))
        intervals.append((counts, rates, c.last_writes))
    return digest.hexdigest(), intervals


def test_rate_records_are_byte_identical_to_before():
    for max_paths, digest in GOLDEN.items():      # 20 paths per record (default), every path
        assert _run(max_paths)[0] == digest


def test_every_interval_sums_exactly_to_its_drain():
    _, intervals = _run(0)
    paths = _paths()
    for counts, rates, last in intervals:
        logs = [c for c in counts if c.tgid == 400 or paths[c.ino] not in (NOT_LOG, UNRESOLVED)]
        assert sum(r["log_writes"] for r in rates) == sum(c.writes for c in logs)
        assert sum(r["log_bytes"] for r in rates) == sum(c.bytes for c in logs)
        ref = aggregate_interval([LogWrite(*w) for w in last], 0, 1.0)
        strip = lambda rs: [(r["service"], r["log_writes"], r["log_bytes"], r["pids"],  # noqa
                             r["comms"], r["paths"]) for r in rs]
        assert strip(sorted(rates, key=lambda r: (-r["log_writes"], r["service"]))) == \
            strip(ref)


def test_first_by_path_is_nsmallest_by_path():
    """The C-level pick of the tied paths: the same objects in the same order as
    heapq.nsmallest, also when paths repeat (then it falls back to nsmallest)."""
    import heapq
    from collector.aggregate.logrates import _PATH, _first_by_path
    rng = random.Random(3)
    for trial in range(2000):
        m, n = rng.randint(0, 60), rng.randint(1, 25)
        top = 40 if trial % 2 else 10**6                # half with repeated paths
        accs = [[None, 1, 1, (1, "a"), None, "s", f"/p{rng.randint(0, top)}"]
                for _ in range(m)]
        assert list(map(id, _first_by_path(accs, list(map(_PATH, accs)), n))) == \
            list(map(id, heapq.nsmallest(n, accs, key=_PATH)))
