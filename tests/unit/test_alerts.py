"""Baselines and alerts (collector/aggregate/baseline.py, alerts.py) on synthetic series."""
import math
import random
import statistics

import pytest

from collector.aggregate.alert_lines import format_event
from collector.aggregate.alerts import (
    ABOVE_BASELINE,
    CLOSE,
    NEW_SERVICE,
    OPEN,
    RECOVERED,
    RELEARNED,
    Detector,
)
from collector.aggregate.signals import (
    LOG_BYTES,
    LOG_WRITES,
    RESETS_RECEIVED,
    RESETS_SENT,
    DetectorConfig,
    Limits,
    contributors,
    signal_value,
)
from collector.aggregate.baseline import MAD_TO_SIGMA, Baseline, RobustWindow

T0 = 1_700_000_000.0


def rate(service, writes_per_s, interval=1.0, bytes_per_line=100, paths=None, pids=(10,),
         resets_sent=None, resets_received=None):
    writes = int(round(writes_per_s * interval))
    rec = {"v": "1.1", "type": "rate", "ts": 0.0, "host": "h", "seq": 0, "interval": interval,
           "service": service, "pids": list(pids), "comms": ["app"],
           "log_writes": writes, "log_bytes": writes * bytes_per_line,
           "log_writes_per_s": writes / interval,
           "log_bytes_per_s": writes * bytes_per_line / interval,
           "paths": paths if paths is not None else
           [{"path": f"/var/log/{service}.log", "writes": writes,
             "bytes": writes * bytes_per_line, "pids": list(pids)}]}
    if resets_sent is not None:
        rec["resets_sent"] = resets_sent
    if resets_received is not None:
        rec["resets_received"] = resets_received
    return rec


class Feed:
    """Drives a Detector one interval at a time; records every event with its interval."""

    def __init__(self, config=None, interval=1.0):
        self.det = Detector(config)
        self.interval = interval
        self.i = 0
        self.events = []

    def step(self, recs, resets=()):
        ts = T0 + (self.i + 1) * self.interval
        evs = self.det.observe(ts, self.interval, recs, resets)
        for e in evs:
            self.events.append((self.i, e))
        self.i += 1
        return evs

    def opened(self, signal=None):
        return [(i, e) for i, e in self.events
                if e.state == OPEN and (signal is None or e.alert.signal == signal)]

    def closed(self, signal=None):
        return [(i, e) for i, e in self.events
                if e.state == CLOSE and (signal is None or e.alert.signal == signal)]


# -- RobustWindow ---------------------------------------------------------------------
def test_window_median_mad_quantile_match_statistics():
    rnd = random.Random(1)
    xs = [rnd.uniform(0, 100) for _ in range(57)]
    w = RobustWindow(100, xs)
    assert w.median() == pytest.approx(statistics.median(xs))
    m = statistics.median(xs)
    assert w.mad() == pytest.approx(statistics.median(abs(x - m) for x in xs))
    assert w.quantile(0.0) == min(xs) and w.quantile(1.0) == max(xs)
    assert w.quantile(0.25) == pytest.approx(statistics.quantiles(xs, n=4, method="inclusive")[0])


def test_window_is_bounded_and_forgets_oldest_first():
    w = RobustWindow(3)
    for x in (1, 2, 3, 100, 200):
        w.add(x)
    assert len(w) == 3 and w.samples() == [3.0, 100.0, 200.0]
    assert w.median() == 100.0
    # duplicates leave one at a time
    w = RobustWindow(2, [5, 5])
    w.add(7)
    assert w.samples() == [5.0, 7.0] and w.median() == 6.0


def test_window_sliding_matches_recomputation():
    rnd = random.Random(2)
    w = RobustWindow(31)
    xs = []
    for _ in range(500):
        x = rnd.choice([0.0, 1.0, rnd.uniform(0, 10)])
        w.add(x)
        xs = (xs + [x])[-31:]
        assert w.median() == pytest.approx(statistics.median(xs))


def test_window_rejects_bad_input():
    with pytest.raises(ValueError):
        RobustWindow(0)
    w = RobustWindow(3)
    with pytest.raises(ValueError):
        w.add(float("nan"))
    with pytest.raises(ValueError):
        w.median()
    w.add(1)
    with pytest.raises(ValueError):
        w.quantile(1.5)
    w.clear()
    assert len(w) == 0


def test_summary_and_threshold():
    b = RobustWindow(10, [10, 10, 10, 12, 8, 10, 10, 11, 9, 10]).summary()
    assert b.n == 10 and b.median == 10.0
    assert b.sigma == pytest.approx(MAD_TO_SIGMA * 0.0)
    assert b.threshold(k=3, z=6, burst_factor=1.5, floor=100) == 100.0
    assert b.threshold(k=3, z=6, burst_factor=1.5, floor=1) == 30.0
    assert Baseline(10, 10, 10, 0).threshold(3, 6, 1.5, 1) == 70.0
    assert Baseline(10, 0, 0, 40).threshold(3, 6, 1.5, 1) == 60.0
    assert "median=10" in repr(b)


# -- config, signals ---------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(window=0), dict(warmup=400), dict(k=1.0),
                                dict(hysteresis=0), dict(hysteresis=1.5), dict(open_after=0),
                                dict(limits={LOG_WRITES: Limits(1, 1)})])
def test_config_refuses_impossible_values(kw):
    with pytest.raises(ValueError):
        DetectorConfig(**kw)


def test_signal_values_from_rate_records():
    rec = rate("a", 20, interval=2.0, resets_sent=8, resets_received=2)
    assert signal_value(rec, LOG_WRITES) == 20.0
    assert signal_value(rec, LOG_BYTES) == 2000.0
    assert signal_value(rec, RESETS_SENT) == 4.0
    assert signal_value(rec, RESETS_RECEIVED) == 1.0
    plain = rate("a", 20)
    assert signal_value(plain, RESETS_SENT) is None      # no resets probe: not tracked
    assert signal_value({"interval": 0, "resets_sent": 1}, RESETS_SENT) is None


# -- the flood ------------------------------------------------------------------------------
def steady(feed, service, level, n, rnd, noise=0.3, **kw):
    for _ in range(n):
        feed.step([rate(service, level * rnd.uniform(1 - noise, 1 + noise), **kw)])


def test_flood_10_to_5000_lines_alerts_within_3_intervals():
    rnd = random.Random(3)
    f = Feed()
    steady(f, "app.service", 10, 200, rnd)
    assert f.events == []
    jump = f.i
    steady(f, "app.service", 5000, 3, rnd)
    opened = f.opened(LOG_WRITES)
    assert opened, f.events
    i, ev = opened[0]
    assert i - jump < 3
    a = ev.alert
    assert a.service == "app.service" and a.reason == ABOVE_BASELINE
    assert 7 <= a.baseline <= 13
    assert a.ratio == pytest.approx(a.rate / a.baseline) and a.ratio > 300
    assert a.started == T0 + jump * 1.0        # start of the first interval above
    assert a.top["paths"][0]["path"] == "/var/log/app.service.log"
    assert a.top["pids"] == [10]
    # the bytes signal breaks its baseline too (100 B lines)
    assert f.opened(LOG_BYTES)


def test_flood_starting_mid_interval_still_within_3_intervals():
    """The jump lands at the very end of an interval: that interval is barely raised, the
    next two are full; the alert opens on the third interval counting the partial one."""
    rnd = random.Random(4)
    f = Feed()
    steady(f, "app.service", 10, 100, rnd)
    partial = f.i
    f.step([rate("app.service", 10 * 0.99 + 5000 * 0.01)])     # ~60 lines/s: below the floor
    steady(f, "app.service", 5000, 2, rnd)
    (i, ev), = f.opened(LOG_WRITES)
    assert i - partial <= 2


def test_flood_lasting_stays_one_alert_then_closes_with_hysteresis():
    rnd = random.Random(5)
    f = Feed()
    steady(f, "app.service", 10, 100, rnd)
    steady(f, "app.service", 5000, 300, rnd)
    assert len(f.opened(LOG_WRITES)) == 1 and not f.closed(LOG_WRITES)
    a = f.opened(LOG_WRITES)[0][1].alert
    assert a.intervals == 298 and 3500 <= a.peak <= 6500
    # the baseline did not learn the flood
    assert f.det.baseline("app.service", LOG_WRITES).median < 15
    # hovering around half the threshold does not close it
    thr = a.threshold
    for _ in range(20):
        f.step([rate("app.service", thr * 0.45)])
        f.step([rate("app.service", thr * 0.55)])
    assert not f.closed(LOG_WRITES)
    back = f.i
    steady(f, "app.service", 10, 10, rnd)
    (i, ev), = f.closed(LOG_WRITES)
    assert i - back == DetectorConfig().close_after - 1
    assert ev.alert.close_reason == RECOVERED
    body = ev.fields()
    assert body["state"] == CLOSE and body["duration_s"] == ev.alert.ended - ev.alert.started
    # and it can open again
    steady(f, "app.service", 5000, 3, rnd)
    assert len(f.opened(LOG_WRITES)) == 2


def test_single_interval_spike_does_not_alert():
    rnd = random.Random(6)
    f = Feed()
    steady(f, "app.service", 10, 100, rnd)
    for _ in range(20):
        f.step([rate("app.service", 5000)])
        steady(f, "app.service", 10, 20, rnd)
    assert f.opened() == []


def test_regular_bursts_are_learnt_as_normal():
    """A job that logs 1000 lines/s for 3 s every 30 s: the p98 term keeps it quiet once
    learnt; a real flood of the same service still alerts."""
    f = Feed()
    for i in range(600):
        f.step([rate("cron.service", 1000 if i % 30 < 3 else 1)])
    assert [e for i, e in f.opened() if i >= 60] == []
    for _ in range(3):
        f.step([rate("cron.service", 5000)])
    assert f.opened(LOG_WRITES)[-1][0] >= 600


@pytest.mark.parametrize("level", [1, 10, 50, 200, 1000, 5000, 20000])
def test_steady_noisy_load_never_alerts(level):
    """+/-30% uniform noise around many levels, 20,000 intervals each, log and resets."""
    rnd = random.Random(level)
    f = Feed()
    for _ in range(20_000):
        v = level * rnd.uniform(0.7, 1.3)
        r = rnd.uniform(0.7, 1.3) * min(level, 40)
        f.step([rate("svc", v, resets_sent=int(r), resets_received=int(r * 0.5))])
    assert f.events == []


def test_steady_load_with_gaussian_noise_and_quiet_intervals_never_alerts():
    rnd = random.Random(11)
    f = Feed()
    for _ in range(20_000):
        recs = []
        for name, level in (("a", 30), ("b", 300), ("c", 3000)):
            v = max(0.0, rnd.gauss(level, 0.1 * level))     # sd 10%: |3 sd| = 30%
            if rnd.random() < 0.02:
                continue        # a quiet interval now and then: no record at all
            recs.append(rate(name, v))
        f.step(recs)
    assert f.events == []


def test_new_loud_service_alerts_on_the_absolute_floor():
    rnd = random.Random(7)
    f = Feed()
    steady(f, "old.service", 10, 100, rnd)
    f.step([rate("old.service", 10), rate("loud.service", 3000)])
    f.step([rate("old.service", 10), rate("loud.service", 3000)])
    (i, ev), = f.opened(LOG_WRITES)
    assert ev.alert.service == "loud.service" and ev.alert.reason == NEW_SERVICE
    assert ev.alert.threshold == DetectorConfig().limits[LOG_WRITES].new_floor
    assert "new service" in format_event(ev)


def test_new_service_below_new_floor_learns_quietly_then_ratio_applies():
    rnd = random.Random(8)
    f = Feed()
    steady(f, "old.service", 10, 100, rnd)
    steady(f, "new.service", 300, 100, rnd)
    assert f.events == []
    steady(f, "new.service", 3000, 3, rnd)
    (i, ev), = f.opened(LOG_WRITES)
    assert ev.alert.reason == ABOVE_BASELINE and 200 < ev.alert.baseline < 400


def test_services_present_at_start_are_learnt_not_new():
    """At daemon start every service is unknown; a loud one is not an alert then."""
    f = Feed()
    for _ in range(100):
        f.step([rate("busy.service", 3000)])
    assert f.events == []


def test_quiet_service_below_floor_never_alerts_whatever_the_ratio():
    f = Feed()
    for _ in range(100):
        f.step([rate("tiny", 0.5)])
    for _ in range(10):
        f.step([rate("tiny", 90)])          # 180x, but below the 100 lines/s floor
    assert f.events == []


def test_reset_storm_alerts_with_peers_and_idle_buckets():
    rnd = random.Random(9)
    f = Feed()
    for _ in range(200):
        f.step([rate("front.service", 20, resets_sent=0,
                     resets_received=1 if rnd.random() < 0.2 else 0)])
    assert f.events == []
    storm = f.i
    for _ in range(3):
        resets = [{"type": "reset", "service": "front.service", "direction": "received",
                   "family": "ipv4", "remote": "10.0.0.9", "remote_port": 443,
                   "idle_ms": 350_000 + j} for j in range(40)]
        resets += [{"type": "reset", "service": "front.service", "direction": "received",
                    "family": "ipv6", "remote": "fd00::1", "remote_port": 8443,
                    "idle_ms": None}]
        f.step([rate("front.service", 20, resets_sent=0, resets_received=200)], resets)
    (i, ev), = f.opened(RESETS_RECEIVED)
    assert i - storm < 3
    a = ev.alert
    assert a.rate == 200.0 and a.baseline == 0.0 and a.ratio is None
    assert a.threshold == DetectorConfig().limits[RESETS_RECEIVED].floor
    assert a.top["peers"][0] == {"peer": "10.0.0.9:443", "resets": 40}
    assert a.top["peers"][1] == {"peer": "[fd00::1]:8443", "resets": 1}
    assert a.top["idle"] == [{"bucket": "4.37m-8.74m", "resets": 40}]
    assert a.top["sampled_resets"] == 41
    assert f.opened(RESETS_SENT) == [] and f.opened(LOG_WRITES) == []
    assert "top peer: 10.0.0.9:443" in format_event(ev)


def test_resets_after_long_quiet_use_the_known_zeros():
    """A service tracked for a while with no resets: its first resets are judged against
    a baseline of zeros (not as a new signal in warm-up)."""
    f = Feed()
    for _ in range(100):
        f.step([rate("svc", 20, resets_sent=0, resets_received=0)])
    for _ in range(2):
        f.step([rate("svc", 20, resets_sent=30, resets_received=0)])
    (i, ev), = f.opened(RESETS_SENT)
    assert ev.alert.reason == ABOVE_BASELINE and ev.alert.baseline == 0.0


def test_quiet_service_closes_its_alert_then_expires():
    cfg = DetectorConfig(expire_after=50)
    f = Feed(cfg)
    for _ in range(40):
        f.step([rate("a", 10), rate("keep", 10)])
    for _ in range(3):
        f.step([rate("a", 5000), rate("keep", 10)])
    assert f.opened(LOG_WRITES)
    for _ in range(cfg.close_after):
        f.step([rate("keep", 10)])
    assert f.closed(LOG_WRITES)[0][1].alert.close_reason == RECOVERED
    assert "a" in f.det.services
    for _ in range(50):
        f.step([rate("keep", 10)])
    assert "a" not in f.det.services and "keep" in f.det.services


def test_service_count_is_bounded():
    cfg = DetectorConfig(max_services=10, warmup=5, window=20)
    f = Feed(cfg)
    for i in range(200):
        f.step([rate(f"s{i}", 10), rate("steady", 10)])
        assert len(f.det.services) <= 10
    assert "steady" in f.det.services and "s199" in f.det.services


def test_memory_per_signal_is_bounded():
    cfg = DetectorConfig(window=50, warmup=10, relearn_after=100)
    f = Feed(cfg)
    for _ in range(30):
        f.step([rate("a", 10)])
    for _ in range(500):
        f.step([rate("a", 5000)])
        st = f.det.services["a"].signals[LOG_WRITES]
        assert len(st.window) <= 50 and (st.shadow is None or len(st.shadow) <= 50)


def test_long_alert_is_relearned_as_the_new_normal():
    cfg = DetectorConfig(relearn_after=100)
    f = Feed(cfg)
    rnd = random.Random(10)
    steady(f, "a", 10, 60, rnd)
    steady(f, "a", 5000, 150, rnd)
    (i, ev), = f.closed(LOG_WRITES)
    assert ev.alert.close_reason == RELEARNED and ev.alert.intervals == 100
    assert 4000 < f.det.baseline("a", LOG_WRITES).median < 6000
    assert len(f.opened(LOG_WRITES)) == 1       # not reopened at the new level
    assert "relearned" in format_event(ev)


def test_open_alerts_status_and_record_body():
    f = Feed()
    rnd = random.Random(12)
    steady(f, "a", 10, 50, rnd)
    steady(f, "a", 5000, 2, rnd)
    (a,) = [x for x in f.det.open_alerts() if x.signal == LOG_WRITES]
    st = f.det.status()
    assert st[("a", LOG_WRITES)][0] is True and st[("a", LOG_WRITES)][1] == a.rate
    assert ("a", RESETS_SENT) not in st            # never carried: not tracked
    body = f.opened(LOG_WRITES)[0][1].fields()
    assert set(body) == {"state", "service", "signal", "rate", "baseline", "spread", "ratio",
                         "threshold", "reason", "started", "peak", "intervals", "top"}
    assert body["state"] == OPEN and math.isfinite(body["ratio"])
    assert f.det.baseline("nope", LOG_WRITES) is None


def test_events_closes_before_opens_sorted():
    f = Feed(DetectorConfig(close_after=1))
    for _ in range(40):
        f.step([rate("a", 10), rate("b", 10)])
    for _ in range(2):
        f.step([rate("a", 5000), rate("b", 10)])
    evs = f.step([rate("a", 10), rate("b", 5000)])
    evs = f.step([rate("a", 10), rate("b", 5000)])
    assert [e.state for e in evs] == [OPEN, OPEN]
    evs = f.step([rate("a", 5000), rate("b", 10)])
    assert evs[0].state == CLOSE


def test_contributors_for_bytes_sort_by_bytes():
    rec = rate("a", 10, paths=[{"path": "/x", "writes": 10, "bytes": 10, "pids": [1]},
                               {"path": "/y", "writes": 1, "bytes": 9000, "pids": [2]}])
    assert contributors(LOG_BYTES, rec, ())["paths"][0]["path"] == "/y"
    assert contributors(LOG_WRITES, rec, ())["paths"][0]["path"] == "/x"
    assert contributors(RESETS_SENT, None, ()) == {"sampled_resets": 0, "peers": [], "idle": []}


def test_records_without_service_are_ignored():
    f = Feed()
    f.step([{"type": "rate", "interval": 1.0}])
    assert f.det.services == {}


def test_summary_is_cached_for_a_few_samples():
    w = RobustWindow(10, [1, 2, 3])
    first = w.summary(max_stale=2)
    assert w.summary(max_stale=2) is first
    w.add(100)
    w.add(100)
    assert w.summary(max_stale=2) is first
    w.add(100)
    again = w.summary(max_stale=2)
    assert again is not first and again.median == 51.5
    w.add(7)
    assert w.summary() is not again            # max_stale 0: any new sample recomputes
    w.clear()
    with pytest.raises(ValueError):
        w.summary()
