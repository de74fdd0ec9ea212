"""Loss with a name (issue 23 item 6): writes lost to a full count map are reported by
the writer's uid, bounded, and always sum to the host-wide `lost_writes`."""
import struct

from prometheus_client.parser import text_string_to_metric_families

from collector.pipeline.runtime import Collector
from collector.probes.abi import abi
from collector.probes.logwrite_counts import LOST_OTHER, lost_by_uid
from collector.sinks.prometheus import LOST_UID_LABELS, PrometheusSink, add_lost_by_uid
from tests.unit.test_runtime_begin import Clock, FakeProbe, Resolver, Services


def drained(pairs):
    """(key bytes, value bytes) as the batch drain of lost0/lost1 returns them."""
    return (b"".join(struct.pack("=I", uid) for uid, _ in pairs),
            b"".join(struct.pack("=Q", n) for _, n in pairs))


def test_the_abi_bounds_the_kernel_map_and_the_labels_alike():
    assert abi().SW_LOST_UIDS == LOST_UID_LABELS == 64


def test_decode_sorted_by_uid_zeros_left_out_other_last():
    keys, vals = drained([(65534, 1200), (0, 40), (1000, 0), (4243, 7)])
    assert lost_by_uid(keys, vals, 3, 64) == {"0": 40, "4243": 7, "65534": 1200,
                                              LOST_OTHER: 3}
    assert lost_by_uid(keys, vals, 0, 64) == {"0": 40, "4243": 7, "65534": 1200}
    assert lost_by_uid(b"", b"", 0, 64) == {}
    assert lost_by_uid(b"", b"", 5, 64) == {LOST_OTHER: 5}


def test_decode_bounded_the_rest_added_to_other_exactly():
    pairs = [(uid, uid + 1) for uid in range(100)]     # a key-by-key drain that saw churn
    keys, vals = drained(pairs)
    out = lost_by_uid(keys, vals, 10, 64)
    assert len(out) == 65 and list(out)[:64] == [str(u) for u in range(64)]
    assert out[LOST_OTHER] == 10 + sum(u + 1 for u in range(64, 100))
    assert sum(out.values()) == 10 + sum(n for _, n in pairs)


def test_prometheus_labels_bounded_sum_exact_junk_and_unattributed_to_other():
    totals = {}
    add_lost_by_uid(totals, {"lost_writes": 50, "lost_writes_by_uid": {"0": 20, "65534": 30}})
    assert totals == {"0": 20, "65534": 30}
    # 70 more uids: 62 get labels (64 in all), the rest go to "other"
    rec = {str(1000 + i): 1 for i in range(70)}
    add_lost_by_uid(totals, {"lost_writes": 70, "lost_writes_by_uid": rec})
    assert len([k for k in totals if k != "other"]) == LOST_UID_LABELS
    assert totals["other"] == 8
    # a uid that has a label keeps counting into it when the table is full
    add_lost_by_uid(totals, {"lost_writes": 5, "lost_writes_by_uid": {"65534": 5}})
    assert totals["65534"] == 35
    # not a uid (a hand-made stream), a bad count, and loss the record does not attribute
    add_lost_by_uid(totals, {"lost_writes": 9, "lost_writes_by_uid":
                             {"root": 2, "-1": 1, "99999999999": 1, "7": True, "8": -3}})
    add_lost_by_uid(totals, {"lost_writes": 4})
    assert totals["other"] == 8 + 9 + 4
    assert sum(totals.values()) == 50 + 70 + 5 + 9 + 4
    add_lost_by_uid(totals, {"lost_writes": 0})
    add_lost_by_uid(totals, {})
    assert sum(totals.values()) == 138


def scrape(sink):
    out = {}
    for fam in text_string_to_metric_families(sink.render().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_prometheus_family_sums_to_lost_writes_total():
    sink = PrometheusSink(serve=False)
    base = {"type": "stats", "interval": 1.0}
    sink.write_interval([dict(base, lost_writes=60,
                              lost_writes_by_uid={"65534": 50, "4243": 10})])
    sink.write_interval([dict(base, lost_writes=0)])
    sink.write_interval([dict(base, lost_writes=3, lost_writes_by_uid={"4243": 1, "other": 2})])
    m = scrape(sink)
    by_uid = {dict(k[1])["uid"]: v for k, v in m.items()
              if k[0] == "surgewatch_lost_writes_by_uid_total"}
    assert by_uid == {"65534": 50, "4243": 11, "other": 2}
    assert m[("surgewatch_lost_writes_total", ())] == 63 == sum(by_uid.values())


def test_no_loss_no_series():
    sink = PrometheusSink(serve=False)
    sink.write_interval([{"type": "stats", "interval": 1.0, "lost_writes": 0}])
    assert not [k for k in scrape(sink) if k[0].startswith("surgewatch_lost_writes_by_uid")]


class LossyProbe(FakeProbe):
    """Drains like the real probe: the interval's loss by uid next to its counts."""

    def __init__(self):
        super().__init__()
        self.next_lost = {}

    def collect(self):
        self.lost_by_uid, self.next_lost = self.next_lost, {}
        return super().collect()

    def health(self):
        # the per-CPU health counter is read later than the epoch flip: it may hold a
        # write of the next interval; the stats take the drained map's figure
        return dict(super().health(), counts_full=999)


def test_stats_carry_the_drained_loss_by_uid_and_its_exact_sum():
    clock, probe = Clock(), LossyProbe()
    c = Collector(probe, Resolver(), Services(), host="h", clock=clock, wallclock=clock)
    c.begin()
    probe.write(5)
    probe.next_lost = {"0": 3, "65534": 40, "other": 1}
    clock.t += 1
    stats = c.interval()[1]
    assert stats["lost_writes"] == 44
    assert stats["lost_writes_by_uid"] == {"0": 3, "65534": 40, "other": 1}
    clock.t += 1
    stats = c.interval()[1]
    assert stats["lost_writes"] == 0 and "lost_writes_by_uid" not in stats


def test_a_probe_without_the_maps_keeps_the_health_counter():
    clock, probe = Clock(), FakeProbe()
    c = Collector(probe, Resolver(), Services(), host="h", clock=clock, wallclock=clock)
    c.begin()
    clock.t += 1
    stats = c.interval()[1]
    assert stats["lost_writes"] == 0 and "lost_writes_by_uid" not in stats


def test_stats_carry_the_runs_the_kernel_skipped_per_interval():
    clock, probe = Clock(), FakeProbe()
    c = Collector(probe, Resolver(), Services(), host="h", clock=clock, wallclock=clock)
    c.begin()
    probe.missed = 7
    clock.t += 1
    assert c.interval()[1]["probe_runs_missed"] == 7
    clock.t += 1
    assert c.interval()[1]["probe_runs_missed"] == 0       # a delta, not a running total


class Info:
    """libbpf.runs_missed as the kernel answers it: a running total per program."""
    def __init__(self, totals):
        self.totals = totals

    def __call__(self, fd):
        if fd not in self.totals:
            raise OSError(9, "bad fd")
        return self.totals[fd]


def test_probe_runs_missed_is_each_programs_increase_and_skips_unreadable(monkeypatch):
    from collector.probes import base
    from collector.probes.loader import Handover
    from collector.probes.resets import ResetProbe

    info = Info({10: 5, 11: 0})
    monkeypatch.setattr(base, "runs_missed", info)
    p = ResetProbe()
    p.handover = Handover("resets", {}, {}, {}, {"sw_send_reset": 10, "sw_set_state": 11,
                                                  "gone": 12})
    assert p.runs_missed() == 5          # since load: the kernel's total so far
    info.totals[10], info.totals[11] = 5, 2
    assert p.runs_missed() == 2
    assert p.runs_missed() == 0
