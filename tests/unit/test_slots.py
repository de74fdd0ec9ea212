"""Slots by owner and volume (collector/aggregate/slots.py) and their three users: the
interval's rate records (fold_rates), the detector's eviction, Prometheus' service labels.
Issue 23 items 3 and 4, at unit scale."""
from prometheus_client.parser import text_string_to_metric_families

from collector.aggregate.alerts import OPEN, Detector
from collector.aggregate.signals import LOG_WRITES, DetectorConfig
from collector.aggregate.slots import OTHER, choose_victim, fold_rates, rank
from collector.records import model
from collector.sinks.prometheus import PrometheusSink

ATTACKER = "uid:65534"


def body(service, writes, pid=1, paths=None, interval=1.0):
    paths = paths if paths is not None else [(f"/var/log/{service}.log", writes)]
    return {"seq": 0, "interval": interval, "service": service, "pids": [pid],
            "comms": [service[:15]], "log_writes": writes, "log_bytes": 10 * writes,
            "log_writes_per_s": writes / interval, "log_bytes_per_s": 10 * writes / interval,
            "paths": [{"path": p, "writes": w, "bytes": 10 * w, "pids": [pid]}
                      for p, w in paths]}


# -- rank ---------------------------------------------------------------------------------
def test_rank_everything_fits_by_volume_then_name():
    assert rank([("b", ATTACKER, 1), ("a", ATTACKER, 1), ("c", "system", 5)], 3) == \
        ["c", "a", "b"]


def test_rank_protected_first_whatever_the_volume():
    entries = [(f"spray{i:04d}", ATTACKER, 1000) for i in range(50)] + \
        [("victim.service", "system", 1), ("db", "container", 2)]
    kept = rank(entries, 10, per_owner=5)
    assert kept[:2] == ["db", "victim.service"]
    assert len(kept) == 10


def test_rank_one_owner_takes_its_share_then_free_slots_by_volume():
    spray = [(f"spray{i:04d}", ATTACKER, 100) for i in range(2000)]
    other_user = [("app", "uid:1000", 50), ("tool", "uid:1000", 1)]
    kept = rank(spray + other_user, 10, per_owner=4)
    # the attacker's first 4 by volume/name, then uid 1000's two, then free slots: attacker
    assert kept == ["spray0000", "spray0001", "spray0002", "spray0003", "app", "tool",
                    "spray0004", "spray0005", "spray0006", "spray0007"]


def test_rank_without_limit_keeps_all():
    assert rank([("a", "x", 1), ("b", "y", 2)], 0) == ["b", "a"]


# -- fold_rates: the per-interval cap on rate records -------------------------------------
def test_fold_keeps_the_real_service_and_sums_the_spray_exactly():
    # issue 23 item 3: 2,000 names of one user, ~3.3 lines/s each; a real service at 500
    spray = [body(f"sw{i:04d}", 3 + (i % 3 == 0), pid=4242) for i in range(2000)]
    real = body("victim.service", 500, pid=77)
    owners = {b["service"]: ATTACKER for b in spray}
    owners["victim.service"] = "system"
    spray[1999]["resets_sent"] = 1               # a folded record's resets are kept too
    kept, (other, extra) = fold_rates(spray + [real], owners, limit=100, per_owner=20)
    assert len(kept) == 100
    names = [b["service"] for b in kept]
    assert "victim.service" in names and OTHER not in names
    assert extra == {"resets_sent": 1}
    kept.append(other)
    assert other["owner"] == "mixed" and other["folded"] == 1901
    total = sum(b["log_writes"] for b in spray) + 500
    assert sum(b["log_writes"] for b in kept) == total
    assert sum(b["log_bytes"] for b in kept) == 10 * total
    assert other["paths"][0]["path"] == "(other)" and other["paths"][0]["folded"] == 1901
    assert other["paths"][0]["writes"] == other["log_writes"]
    assert other["pids"] == [4242]
    assert kept[names.index("victim.service")]["owner"] == "system"
    # the records encode (schema 1.6 fields)
    rec = model.rate_record("h", 1.0, **other)
    assert rec["folded"] == 1901 and rec["owner"] == "mixed"


def test_fold_below_the_limit_only_adds_owners():
    bodies = [body("a", 1), body("b", 2)]
    kept, other = fold_rates(bodies, {"a": "system"}, limit=100)
    assert other is None and [b["owner"] for b in kept] == ["system", "unknown"]
    assert "folded" not in kept[0]


# -- the detector -------------------------------------------------------------------------
def rate_rec(service, writes, owner=None):
    rec = model.rate_record("h", 0.0, **body(service, writes))
    if owner is not None:
        rec["owner"] = owner
    return rec


def run_spray(owner_of_victim):
    """A real service (name sorting before the spray's) at 50 lines/s, then 500, while
    a user's 300 names write 3 lines each every interval; the detector keeps 100."""
    det = Detector(DetectorConfig(max_services=100, warmup=10, window=60))
    opened = []
    for i in range(80):
        victim = 50 if i < 60 else 500
        recs = [rate_rec(f"sw{j:04d}", 3, ATTACKER) for j in range(300)]
        recs.append(rate_rec("a-victim.service", victim, owner_of_victim))
        for ev in det.observe(1000.0 + i, 1.0, recs):
            if ev.state == OPEN:
                opened.append((i, ev.alert.service, ev.alert.signal))
        assert len(det.services) <= 100
    return opened


def test_detector_spray_of_names_never_evicts_the_loud_service():
    opened = run_spray("system")
    assert ("a-victim.service", LOG_WRITES) in [(s, g) for _, s, g in opened]
    assert all(i >= 60 for i, s, _ in opened if s == "a-victim.service")


def test_detector_eviction_is_by_volume_even_without_an_owner():
    # before: eviction by (quietness, name) dropped "a-victim" every interval (ties by name)
    opened = run_spray(None)
    assert ("a-victim.service", LOG_WRITES) in [(s, g) for _, s, g in opened]


# -- Prometheus labels --------------------------------------------------------------------
def samples(sink, name):
    out = {}
    for fam in text_string_to_metric_families(sink.render().decode("utf-8")):
        for s in fam.samples:
            if s.name == name:
                out[s.labels["service"]] = s.value
    return out


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def stats(seq=0):
    return model.stats_record("h", 1.0, seq=seq, interval=1.0, drain_ms=1.0, keys=1,
                              map_capacity=100, lost_events=0,
                              unresolved_writes=0, cpu_s=0.0, rss_bytes=0)


def test_squatters_cannot_hold_labels_from_a_loud_service():
    # issue 23 item 4: 210 one-line names took all 200 labels; a later 5,000-line
    # service was only service="(other)"
    clock = Clock()
    sink = PrometheusSink(serve=False, max_services=200, clock=clock)
    for i in range(210):
        sink.write_interval([rate_rec(f"squat{i:03d}", 1, ATTACKER), stats(i)])
        clock.t += 1.0
    for i in range(30):                    # they decay; nothing else happens
        sink.write_interval([stats(300 + i)])
        clock.t += 1.0
    sink.write_interval([rate_rec("loud-app", 5000, "uid:1000"), stats(400)])
    writes = samples(sink, "surgewatch_log_writes_total")
    assert writes["loud-app"] == 5000
    assert len([k for k in writes if k != OTHER]) == 200
    assert sum(writes.values()) == 210 + 5000          # exact, (other) included


def test_the_attackers_share_cannot_take_another_owners_slot_even_louder():
    sink = PrometheusSink(serve=False, max_services=10, max_services_per_owner=3)
    recs = [rate_rec(f"a{i}", 100 + i, ATTACKER) for i in range(7)] + \
        [rate_rec("quiet.service", 1, "system"), rate_rec("b1", 2, "uid:1000"),
         rate_rec("b2", 2, "uid:1000")]
    sink.write_interval(recs + [stats()])
    sink.write_interval([rate_rec("a-loud", 100000, ATTACKER), stats(1)])
    writes = samples(sink, "surgewatch_log_writes_total")
    for kept in ("quiet.service", "b1", "b2", "a-loud"):
        assert kept in writes
    assert sum(writes.values()) == sum(100 + i for i in range(7)) + 5 + 100000
    # and a newcomer of another owner takes one of the attacker's excess slots
    sink.write_interval([rate_rec("c1", 1, "uid:1001"), stats(2)])
    assert samples(sink, "surgewatch_log_writes_total")["c1"] == 1


def test_choose_victim_rules():
    inc = [("sys.service", "system", 0.0), ("a", ATTACKER, 5.0), ("b", ATTACKER, 1.0)]
    assert choose_victim(inc, "system", 0) == "b"           # protected takes unprotected
    assert choose_victim(inc, "uid:1", 1) is None           # not twice louder than b
    assert choose_victim(inc, "uid:1", 3) == "b"
    assert choose_victim(inc, ATTACKER, 100, per_owner=2) == "b"   # only its own
    assert choose_victim(inc, ATTACKER, 1, per_owner=2) is None
    assert choose_victim(inc, "uid:1", 0, per_owner=1) == "b"      # attacker over its share
    assert choose_victim([("s", "system", 1.0)], "uid:1", 1e9) is None
    assert choose_victim([], "uid:1", 1) is None
