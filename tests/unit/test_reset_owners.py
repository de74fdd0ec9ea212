"""Owners of services named only by the resets probe (resets, TCP load): a system unit
that serves TCP but never logs keeps owner "system" in its rate record, so the slot
ranking (collector/aggregate/slots.py) protects it from a user's cheap names
(docs/reliability.md, "Hostile local user"). Before, only log-write keys filled the
owner map and such a record was always "unknown"."""
from collector.host.procfs import ProcFS
from collector.host.services import ServiceResolver
from collector.pipeline.resets import ResetAttributor, ResetStage
from collector.pipeline.runtime import Collector
from collector.probes.reset_counts import LoadCount, ResetCount
from tests.support.probes import ResetProbeDouble, WriteProbeDouble

IDLE = (0,) * 8


def proc(root, pid, cgroup, uid):
    d = root / str(pid)
    d.mkdir()
    (d / "stat").write_text(f"{pid} (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {pid}7 0 0\n")
    (d / "cgroup").write_text(f"0::{cgroup}\n")
    (d / "status").write_text(f"Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")


def reset(tgid, comm, n):
    return ResetCount(tgid, "sent", "abort", "ESTABLISHED", None, 0, 0, n, n, IDLE, 0, comm)


NoWrites = WriteProbeDouble        # the log-write probe: nothing logged this interval


class Resolver:
    def start_drain(self):
        pass


class NoListeners:
    def refresh(self):
        pass

    def owner(self, port):
        return None


def collector(tmp_path, counts, loads, max_services):
    services = ServiceResolver(ProcFS(str(tmp_path)))
    probe = ResetProbeDouble()
    stage = ResetStage(probe, ResetAttributor(services, NoListeners()), "h")
    c = Collector(NoWrites(), Resolver(), services, host="h", resets=stage)
    c.max_services = max_services
    c.begin()
    probe.counts, probe.loads = counts, loads      # counted after begin()
    return c


def test_reset_and_load_only_system_units_are_owned_and_keep_their_slots(tmp_path):
    proc(tmp_path, 10, "/system.slice/swquiet-resets.service", 0)
    proc(tmp_path, 11, "/system.slice/swquiet-load.service", 0)
    spray = list(range(100, 105))      # user 65534, no unit: named by comm, louder
    for pid in spray:
        proc(tmp_path, pid, "/", 65534)
    counts = [reset(10, "x", 1)] + [reset(pid, f"spray{pid}", 50) for pid in spray]
    loads = [LoadCount(11, 1, 0, 0, 0, "x")] + \
        [LoadCount(pid, 100, 0, 0, 0, f"spray{pid}") for pid in spray]
    iv = collector(tmp_path, counts, loads, max_services=4).interval()
    by = {r["service"]: r for r in iv.rates}
    assert by["swquiet-resets.service"]["owner"] == "system"
    assert by["swquiet-resets.service"]["resets_sent"] == 1
    assert by["swquiet-load.service"]["owner"] == "system"
    assert by["swquiet-load.service"]["conns_accepted"] == 1
    # the two loudest sprayed names, under their owner; the other three summed exactly
    assert [by[f"spray{p}"]["owner"] for p in (100, 101)] == ["uid:65534"] * 2
    assert by["(other)"]["folded"] == 3
    assert by["(other)"]["resets_sent"] == 150 and by["(other)"]["conns_accepted"] == 300
    assert len(iv.rates) == 5


def test_a_log_writes_owner_wins_and_unknown_is_never_kept_over_a_known_one(tmp_path):
    proc(tmp_path, 10, "/system.slice/swquiet.service", 0)
    # pid 20 gone (no /proc entry): its resets are the comm's, owner unknown
    counts = [reset(20, "gone", 1), reset(10, "x", 1)]
    c = collector(tmp_path, counts, [], max_services=0)
    c.keys.owners["swquiet.service"] = "system"
    c.keys.owners["gone"] = "unknown"
    by = {r["service"]: r for r in c.interval().rates}
    assert by["swquiet.service"]["owner"] == "system"
    assert by["gone"]["owner"] == "unknown"
    a = c.resets.attributor
    a.owners.clear()
    a.owners["s"] = "unknown"
    a._note("s", 10, None)               # a live process of the same service: known now
    assert a.owners["s"] == "system"
    a._note("s", 20, None)               # then a gone one: the known owner stays
    assert a.owners["s"] == "system"
