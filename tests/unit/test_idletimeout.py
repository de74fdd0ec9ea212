"""The idle timeout named (collector/aggregate/idletimeout.py) and where it is said: the
snapshot's resets view and JSON, and reset alerts (top.idle_timeouts, format_event)."""
from collections import namedtuple

from collector.aggregate.alert_lines import format_event
from collector.aggregate.alerts import OPEN, Detector
from collector.aggregate.idletimeout import (
    IdleTimeouts,
    IdleVerdict,
    approx,
    at_risk,
    judge,
    pool_peer,
    record_peer,
)
from collector.aggregate.resets import AttributedResets, ResetWindow, aggregate_resets
from collector.aggregate.signals import RESETS_RECEIVED, DetectorConfig

FE = "frontend.service"
LB = "10.0.0.5:8080"


def test_pool_peer_names_the_server_side_by_port_and_clients_by_address():
    # we connected to it: its port is the lower one
    assert pool_peer("10.0.0.5", 8080, 51234) == "10.0.0.5:8080"
    # it connected to us (our 8080): its ports differ per connection, grouped
    assert pool_peer("10.0.0.9", 43308, 8080) == "10.0.0.9:*"
    assert pool_peer("fd00::1", 443, 40000, ipv6=True) == "[fd00::1]:443"
    assert pool_peer("fd00::1", 40000, 443, ipv6=True) == "[fd00::1]:*"
    # no local port known (or equal ports): addr:port
    assert pool_peer("10.0.0.5", 8080, None) == "10.0.0.5:8080"
    assert pool_peer("10.0.0.5", 8080, 8080) == "10.0.0.5:8080"
    assert record_peer({"family": "ipv6", "remote": "fd00::2", "remote_port": 80,
                        "local_port": 50000}) == "[fd00::2]:80"


def test_approx_says_durations_as_a_person_would():
    assert [approx(ms) for ms in (350, 3002, 3500, 60_000, 62_300, 900_000, 5_400_000,
                                  9_000_000)] == \
        ["350 ms", "3 s", "3.5 s", "60 s", "62 s", "15 min", "90 min", "2.5 h"]
    assert approx(2048, 3) == "2.05 s" and approx(32_768, 3) == "32.8 s"


def test_judge_most_in_one_bucket_names_the_median_of_that_bucket():
    # 5 of 6 in [2.048 s, 4.096 s) (bucket 12), one stray at 100 ms
    v = judge(FE, LB, [3001, 3004, 3002, 100, 3003, 3500], unknown=2)
    assert v == IdleVerdict(FE, LB, 12, 5, 6, 2, 3003.0)
    assert (v.lower_ms, v.upper_ms) == (2048, 4096)
    assert v.line() == ("resets from 10.0.0.5:8080 after ~3 s idle: an idle timeout near 3 s "
                        "(5 of 6 in 2.05s-4.1s)")
    assert v.line(3) == v.line() + "; 3 open connections to it idle >= 2.05 s now, about to " \
                                   "be reset"
    assert v.line(1).endswith("; 1 open connection to it idle >= 2.05 s now, about to be reset")
    # an even count in the bucket: the mean of the middle two
    assert judge(FE, LB, [3000, 3002, 3004, 3010]).timeout_ms == 3003.0
    # 60 s: bucket 16, [32.8 s, 65.5 s)
    v = judge(FE, LB, [60_010, 60_002, 60_003, 59_990])
    assert (v.bucket, v.in_bucket, v.timeout_ms) == (16, 4, 60_002.5)
    assert v.line().startswith("resets from 10.0.0.5:8080 after ~60 s idle: an idle timeout "
                               "near 60 s (4 of 4 in 32.8s-1.09m)")


def test_judge_thresholds_exactly():
    # 60% is enough: 3 of 5
    assert judge(FE, LB, [3000, 3000, 3000, 100, 20_000]).in_bucket == 3
    # below 60%: 2 of 4, and 5 of 9
    assert judge(FE, LB, [3000, 3000, 100, 20_000]) is None
    assert judge(FE, LB, [3000] * 5 + [100] * 4) is None
    # fewer than 4 known idle times: nothing said, however clustered
    assert judge(FE, LB, [3000, 3000, 3000]) is None
    assert judge(FE, LB, [3000] * 4).known == 4
    # a bucket that starts below 512 ms is no idle timeout
    assert judge(FE, LB, [300, 301, 302, 303]) is None         # [256, 512)
    assert judge(FE, LB, [600, 601, 602, 603]).bucket == 10    # [512, 1024)
    assert judge(FE, LB, [0.5] * 10) is None                   # < 1 ms
    # the last, open bucket: >= 2^22 ms (about 70 min)
    v = judge(FE, LB, [5_000_000] * 4)
    assert v.bucket == 23 and v.upper_ms is None and "(4 of 4 in >=1.17h)" in v.line()


def test_at_risk_counts_open_connections_to_the_peer_idle_past_the_lower_bound():
    v = judge(FE, LB, [3000] * 4)                                # lower bound 2048 ms
    rows = [
        {"remote": "10.0.0.5:8080", "idle_s": 2.5},
        {"remote": "10.0.0.5:8080", "idle_s": 2.048},           # exactly the bound: counted
        {"remote": "10.0.0.5:8080", "idle_s": 2.047},
        {"remote": "10.0.0.5:8080", "idle_s": None},            # not connected
        {"remote": "10.0.0.5:8443", "idle_s": 9.0},             # another port
        {"remote": "10.0.0.6:8080", "idle_s": 9.0},             # another address
    ]
    assert at_risk(v, rows) == 2
    assert at_risk(v, []) == 0 and at_risk(v, None) == 0
    clients = judge("nginx.service", "10.0.0.9:*", [3000] * 4)
    assert at_risk(clients, [{"remote": "10.0.0.9:43308", "idle_s": 2.5},
                             {"remote": "10.0.0.9:43310", "idle_s": 2.9},
                             {"remote": "10.0.0.19:43310", "idle_s": 2.9}]) == 2
    v6 = judge(FE, "[fd00::1]:443", [3000] * 4)
    assert at_risk(v6, [{"remote": "[fd00::1]:443", "idle_s": 3.0},
                        {"remote": "[fd00::1]:444", "idle_s": 3.0}]) == 1


def _rec(service, remote, rport, lport, idle_ms, direction="received"):
    return {"type": "reset", "service": service, "direction": direction, "family": "ipv4",
            "remote": remote, "remote_port": rport, "local_port": lport, "idle_ms": idle_ms}


def test_window_keeps_only_recent_received_resets_per_service_and_peer():
    t = IdleTimeouts(window_s=600)
    t.observe(1000.0, [_rec(FE, "10.0.0.5", 8080, 50000 + i, 3000 + i) for i in range(3)])
    t.observe(1000.0, [_rec(FE, "10.0.0.5", 8080, 50010, 3000, direction="sent")])
    assert t.verdicts() == []                                   # 3 received only
    t.observe(1300.0, [_rec(FE, "10.0.0.5", 8080, 50020, 3010),
                       _rec(FE, "10.0.0.5", 8080, 50021, None)])
    (v,) = t.verdicts(FE)
    assert (v.peer, v.in_bucket, v.known, v.unknown, v.timeout_ms) == (LB, 4, 4, 1, 3001.5)
    assert t.verdicts("other.service") == []
    # 600 s after the first ones they leave the window: 1 known left
    t.observe(1600.0, [])
    assert t.verdicts() == []
    assert sum(len(q) for q in t.samples.values()) == 2


def test_window_none_keeps_everything_and_peers_are_bounded():
    t = IdleTimeouts(window_s=None, max_peers=2, max_samples=5)
    for i in range(10):
        t.add(float(i), FE, LB, 3000)
    assert len(t.samples[(FE, LB)]) == 5                         # newest 5 kept
    t.add(20.0, FE, "10.0.0.6:80", 3000)
    t.add(21.0, FE, LB, 3000)                                    # LB is the newest again
    t.add(22.0, FE, "10.0.0.7:80", 3000)                         # evicts 10.0.0.6:80
    assert list(t.samples) == [(FE, LB), (FE, "10.0.0.7:80")]
    assert [v.peer for v in t.verdicts()] == [LB]


Ev = namedtuple("Ev", "direction family raddr rport lport idle_ms")


def _snapshot_window():
    """A snapshot's window: 8 resets received by the frontend from the balancer after
    ~3 s, and nginx's 8 from the balancer's other side (ephemeral ports)."""
    w = ResetWindow()
    hist = [0] * 24
    hist[12] = 8
    w.add_interval(aggregate_resets([
        AttributedResets(FE, 11, "python3", "received", None, "CLOSE_WAIT", None, 8, 0,
                         tuple(hist)),
        AttributedResets("nginx.service", 12, "nginx", "received", None, "ESTABLISHED", None,
                         8, 0, tuple(hist))]), 1.0)
    for i in range(8):
        w.add_event(FE, "10.250.1.2:8080",
                    Ev("received", 2, "10.250.1.2", 8080, 51000 + i, 3000 + i), ts=100.0)
        w.add_event("nginx.service", f"10.250.2.1:{43000 + i}",
                    Ev("received", 2, "10.250.2.1", 43000 + i, 8080, 3001), ts=100.0)
    w.add_event(FE, "10.250.1.2:8080", Ev("sent", 2, "10.250.1.2", 8080, 51000, 10), ts=100.0)
    return w


INVENTORY = {
    FE: [{"pid": 11, "comm": "python3", "state": "ESTABLISHED", "local": f"10.250.1.1:{p}",
          "remote": "10.250.1.2:8080", "idle_s": idle, "at_risk": idle >= 2.0}
         for p, idle in ((52000, 2.4), (52001, 2.3), (52002, 2.2), (52003, 0.5))],
    "nginx.service": [{"pid": 12, "comm": "nginx", "state": "ESTABLISHED",
                       "local": "10.250.2.2:8080", "remote": f"10.250.2.1:{p}",
                       "idle_s": 2.4, "at_risk": True} for p in (44000, 44001, 44002)],
}


def test_resets_view_says_the_timeout_and_the_connections_about_to_go():
    from collector.views.resets_view import render_resets, resets_json

    w = _snapshot_window()
    live = render_resets(w, 5)                    # the live view's detail: no inventory
    fe = ("  idle timeout: resets from 10.250.1.2:8080 after ~3 s idle: an idle timeout "
          "near 3 s (8 of 8 in 2.05s-4.1s)")
    ng = ("  idle timeout: resets from 10.250.2.1:* after ~3 s idle: an idle timeout near "
          "3 s (8 of 8 in 2.05s-4.1s)")
    lines = live.splitlines()
    assert fe in lines and ng in lines
    assert lines.index(fe) == lines.index("       2.05s-4.1s | " + "#" * 40 + " 8", 0) + 1
    final = render_resets(w, 5, INVENTORY, 2.0).splitlines()
    assert fe + "; 3 open connections to it idle >= 2.05 s now, about to be reset" in final
    assert ng + "; 3 open connections to it idle >= 2.05 s now, about to be reset" in final
    doc = resets_json(w, INVENTORY, 2.0)
    by = {s["service"]: s for s in doc["services"]}
    (v,) = by[FE]["idle_timeouts"]
    assert v == {"peer": "10.250.1.2:8080", "bucket": 12, "bucket_label": "2.05s-4.1s",
                 "lower_ms": 2048, "upper_ms": 4096, "resets": 8, "known": 8, "unknown": 0,
                 "timeout_ms": 3003.5, "at_risk": 3,
                 "line": fe[len("  idle timeout: "):] + "; 3 open connections to it idle "
                                                        ">= 2.05 s now, about to be reset"}
    assert by["nginx.service"]["idle_timeouts"][0]["at_risk"] == 3
    # without an inventory (JSON of a snapshot that could not read it): no at_risk
    assert "at_risk" not in resets_json(w)["services"][0]["idle_timeouts"][0]


def test_reset_alert_names_the_idle_timeout():
    d = Detector(DetectorConfig(warmup=2, window=10))
    for i in range(2):
        d.observe(1000.0 + i, 1.0, [])
    opened = []
    for i in range(3):
        ts = 1002.0 + i
        recs = [_rec(FE, "10.0.0.5", 8080, 40000 + j, 60_000 + j) for j in range(60)]
        recs += [_rec(FE, "10.0.0.5", 8080, 41000, 500)]          # a stray: 60 of 61
        rate = {"type": "rate", "service": FE, "interval": 1.0, "log_writes": 0,
                "log_writes_per_s": 0.0, "log_bytes_per_s": 0.0, "resets_sent": 0,
                "resets_received": 61}
        # what the alert record and the log line say at that interval
        opened += [(ev.fields(), format_event(ev)) for ev in d.observe(ts, 1.0, [rate], recs)
                   if ev.state == OPEN]
    ((fields, line),) = opened
    assert fields["signal"] == RESETS_RECEIVED
    (v,) = fields["top"]["idle_timeouts"]
    assert (v["peer"], v["resets"], v["known"], v["bucket"]) == (LB, 120, 122, 16)
    assert v["timeout_ms"] == 60_029.5
    assert line == (
        f"alert open: {FE} resets received 61 resets/s (new service, no baseline yet; floor "
        "50 resets/s); top peer: 10.0.0.5:8080; resets from 10.0.0.5:8080 after ~60 s idle: "
        "an idle timeout near 60 s (120 of 122 in 32.8s-1.09m)")
    # while open, its top follows the window (what snapshot says of alerts open at its end)
    (a,) = d.open_alerts()
    assert a.top["idle_timeouts"][0]["resets"] == 180 and a.top["peers"]
