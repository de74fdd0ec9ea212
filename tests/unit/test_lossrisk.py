"""Loss risk (collector.aggregate.lossrisk): journald's per-unit window rule, [capacity]
globs, the log_loss_risk alerts, and what AlertStage, Prometheus, tail, the snapshot table
and the live rows make of them."""
import io

import msgpack
from prometheus_client.parser import text_string_to_metric_families

from collector.aggregate.live_rows import LiveModel
from collector.aggregate.logrates import PathTotal
from collector.aggregate.lossrisk import LOG_LOSS_RISK, LossRisk, window_count
from collector.host.journald_limits import RateLimit
from collector.pipeline.alerts import AlertStage
from collector.records import model
from collector.records.stream import encode, read_records
from collector.sinks.prometheus import PrometheusSink
from collector.views.recordlines import format_record
from collector.views.table import render_table

STDOUT = "journald:/run/systemd/journal/stdout"
NATIVE = "journald:/run/systemd/journal/socket"


class Limits:
    """journald's limits as a test sets them: unit -> (interval_s, burst, effective)."""

    def __init__(self, units=None, default=(10.0, 100, 100), journald_sockets=("/dev/log",)):
        self.units, self.default = dict(units or {}), default
        self.sockets = journald_sockets
        self.asked = []

    def for_unit(self, unit):
        self.asked.append(unit)
        i, b, e = self.units.get(unit, self.default)
        return RateLimit(i, b, e, f"test {unit}")

    def reaches_journald(self, path):
        return path in self.sockets


def rate(service, seq, paths, interval=1.0, ts=None):
    ps = [{"path": p, "writes": n, "bytes": n * 10, "pids": [7]} for p, n in paths.items()]
    return model.rate_record("h", ts if ts is not None else 1000.0 + seq, seq=seq,
                             interval=interval, service=service, pids=[7], comms=["x"],
                             log_writes=sum(paths.values()),
                             log_bytes=10 * sum(paths.values()), paths=ps)


def run(lr, per_interval, interval=1.0):
    """per_interval: [{service: {path: writes}}]; returns (records per interval, events)."""
    out, events = [], []
    for i, services in enumerate(per_interval):
        recs = [rate(s, i, p, interval) for s, p in services.items()]
        evs = lr.observe(1000.0 + (i + 1) * interval, interval, recs)
        out.append(recs)
        events.append([(e.state, e.risk.service, e.risk.key) for e in evs])
    return out, events


# -- the window ---------------------------------------------------------------------------
def test_window_count_sums_the_intervals_within_the_span():
    h = [(1.0, 5)] * 12
    assert window_count(h, 10.0) == (50, 10.0)
    jitter = [(1.001, 5)] * 12                 # measured intervals: within 2% still count
    assert window_count(jitter, 10.0)[0] == 50
    assert window_count([(1.0, 7), (3.0, 9)], 2.0) == (4.5, 2.0)   # 9 / ceil(3 / 2)
    assert window_count([], 10.0) == (0, 0.0)


def test_journald_risk_opens_when_the_window_holds_more_than_the_burst():
    lr = LossRisk(Limits(default=(5.0, 100, 100)))
    # 30/interval: the 5 s window holds 90, 120, 150 ... from the 4th interval on, > 100
    recs, events = run(lr, [{"a.service": {STDOUT: 30}}] * 6 + [{}] * 8)
    opened = [i for i, ev in enumerate(events) if ev]
    assert events[3] == [("open", "a.service", "journald")]
    assert [r[0].get("loss_risk") is not None for r in recs[:6]] == \
        [False, False, False, True, True, True]
    entry = recs[3][0]["loss_risk"][0]
    assert entry == {"limit": "journald", "key": "journald", "unit": "a.service",
                     "interval_s": 5.0, "burst": 100, "configured_burst": 100,
                     "allowed_per_s": 20.0, "source": "test a.service", "messages": 120,
                     "window_s": 4.0, "rate": 30.0, "certain": False, "paths": [STDOUT]}
    assert recs[5][0]["loss_risk"][0]["messages"] == 150
    # quiet from interval 6: the window still holds 120 (6), 90 (7): at risk until 6,
    # then 3 intervals without risk (7, 8, 9) close it at 9
    assert events[9] == [("close", "a.service", "journald")]
    assert opened == [3, 9]


def test_certain_above_twice_the_burst_and_stream_native_syslog_summed():
    lr = LossRisk(Limits(default=(2.0, 50, 50)))
    recs, events = run(lr, [{"b.service": {STDOUT: 40, NATIVE: 30, "syslog:/dev/log": 20,
                                           "syslog:/run/rsyslog.sock": 1000,
                                           "/var/log/b.log": 1000}}] * 2)
    first, second = recs[0][0]["loss_risk"][0], recs[1][0]["loss_risk"][0]
    assert (first["messages"], first["certain"]) == (90, False)
    assert (second["messages"], second["certain"]) == (180, True)
    assert second["paths"] == sorted([STDOUT, NATIVE, "syslog:/dev/log"])


def test_limits_per_unit_and_disabled_limit():
    lim = Limits({"low.service": (10.0, 5, 5), "off.service": (0.0, 100, 100)},
                 default=(10.0, 1000, 1000))
    lr = LossRisk(lim)
    recs, events = run(lr, [{"low.service": {STDOUT: 6}, "off.service": {STDOUT: 10 ** 6},
                             "calm.service": {STDOUT: 6}, "files.service": {"/x.log": 10 ** 6}}])
    assert events[0] == [("open", "low.service", "journald")]
    assert sorted(lim.asked) == ["calm.service", "low.service", "off.service"]


def test_disk_scaled_burst_is_the_one_judged():
    lr = LossRisk(Limits(default=(10.0, 100, 400)))
    recs, events = run(lr, [{"a.service": {STDOUT: 300}}, {"a.service": {STDOUT: 101}}])
    assert events == [[], [("open", "a.service", "journald")]]
    assert recs[1][0]["loss_risk"][0]["burst"] == 400
    assert recs[1][0]["loss_risk"][0]["configured_burst"] == 100


def test_capacity_sums_matching_paths_across_services():
    lr = LossRisk(Limits(), {"/var/log/app/*.log": 100, "journald:*": 1e9})
    recs, events = run(lr, [
        {"a.service": {"/var/log/app/a.log": 60, "/var/log/other.log": 500},
         "b.service": {"/var/log/app/b.log": 30}},                     # 90: under
        {"a.service": {"/var/log/app/a.log": 60},
         "b.service": {"/var/log/app/b.log": 30, "/var/log/app/c.log": 20}},  # 110: over
    ])
    key = "capacity:/var/log/app/*.log"
    assert events[0] == []
    assert events[1] == [("open", "a.service", key), ("open", "b.service", key)]
    a = recs[1][0]["loss_risk"][0]
    assert a == {"limit": "capacity", "key": key, "glob": "/var/log/app/*.log",
                 "capacity": 100.0, "allowed_per_s": 100.0, "rate": 110.0,
                 "service_rate": 60.0, "paths": ["/var/log/app/a.log"]}
    assert recs[1][1]["loss_risk"][0]["paths"] == ["/var/log/app/b.log", "/var/log/app/c.log"]


def test_folded_paths_never_match_a_glob():
    lr = LossRisk(Limits(), {"*": 10})
    recs, events = run(lr, [{"a.service": {"(other)": 1000}}])
    assert events == [[]] and "loss_risk" not in recs[0][0]


def test_capacity_reload_closes_alerts_of_removed_globs():
    lr = LossRisk(Limits(), {"/a/*": 1})
    run(lr, [{"s.service": {"/a/x": 5}}])
    lr.set_capacity({})
    _, events = run(lr, [{"s.service": {"/a/x": 5}}] * 3)
    assert events[2] == [("close", "s.service", "capacity:/a/*")]


def test_quiet_services_are_forgotten():
    lr = LossRisk(Limits(default=(2.0, 100, 100)))
    run(lr, [{"a.service": {STDOUT: 1}}] + [{}] * 3)
    assert lr.history == {}


# -- records and outputs ------------------------------------------------------------------
def stats(seq, ts):
    return model.stats_record("h", ts, seq=seq, interval=1.0, drain_ms=1, keys=1,
                              map_capacity=10, lost_events=0,
                              unresolved_writes=0, cpu_s=0, rss_bytes=1)


def stage_run(n_flood=3, n_quiet=10):
    """u.service: 50 messages/s to journald for n_flood s, then none; its limit 10 per
    5 s, 40 after the disk scaling."""
    lines = []
    stage = AlertStage("web1", log=lambda level, msg, key=None: lines.append((level, msg)),
                       loss_risk=LossRisk(Limits({"u.service": (5.0, 10, 40)})))
    out = []
    for i in range(n_flood + n_quiet):
        r = [rate("u.service", i, {STDOUT: 50 if i < n_flood else 0})]
        out.append((r, stage.interval(r, stats(i, 1000.0 + i), [])))
    return out, lines


def test_alertstage_open_and_close_records_and_log_lines():
    out, lines = stage_run()
    alerts = [a for _, raised in out for a in raised]
    assert [(a["seq"], a["state"], a["signal"]) for a in alerts] == \
        [(0, "open", LOG_LOSS_RISK), (9, "close", LOG_LOSS_RISK)]
    o, c = alerts
    assert o["v"] == model.SCHEMA_VERSION == "1.12"
    assert (o["service"], o["reason"], o["threshold"], o["rate"]) == \
        ("u.service", "journald_rate_limit", 8.0, 50.0)
    assert o["started"] == 999.0 and o["top"] == {"paths": [{"path": STDOUT}]}
    assert o["limit"] == {"limit": "journald", "key": "journald", "unit": "u.service",
                          "interval_s": 5.0, "burst": 40, "configured_burst": 10,
                          "allowed_per_s": 8.0, "source": "test u.service"}
    # 50 a second for 3 s, then quiet: the 5 s window holds 50, 100, 150, 150, 150, 100,
    # 50, then 0 from seq 7: three intervals without risk close it at seq 9
    assert [r[0].get("loss_risk", [{}])[0].get("messages") for r, _ in out] == \
        [50, 100, 150, 150, 150, 100, 50, None, None, None, None, None, None]
    assert [r[0]["loss_risk"][0]["certain"] for r, _ in out[:7]] == \
        [False, True, True, True, True, True, False]
    assert (c["close_reason"], c["ended"], c["duration_s"], c["peak"], c["top"]) == \
        ("below_limit", 1009.0, 10.0, 50.0, o["top"])
    assert lines == [
        ("warning", "loss risk: u.service above its journald rate limit: 50 messages in 1s, "
                    "burst 40 per 5s (test u.service)"),
        ("notice", "loss risk over: u.service back under its journald rate limit after 10s")]
    recs = [r for rates, raised in out for r in rates + raised]
    buf = io.BytesIO(b"".join(encode(r) for r in recs))
    assert list(read_records(buf, "x")) == [msgpack.unpackb(encode(r)) for r in recs]


def test_a_failing_limit_reader_costs_only_the_loss_alerts():
    class Broken(Limits):
        def for_unit(self, unit):
            raise RuntimeError("boom")

    lines = []
    stage = AlertStage("h", log=lambda level, msg, key=None: lines.append((level, msg)),
                       loss_risk=LossRisk(Broken()))
    assert stage.interval([rate("a.service", 0, {STDOUT: 5})], stats(0, 1000.0), []) == []
    assert lines == [("error", "loss-risk check failed this interval: RuntimeError: boom")]


def test_prometheus_gauges_follow_the_alerts():
    out, _ = stage_run()
    sink = PrometheusSink(serve=False)

    def values():
        text = sink.render().decode()
        return {(s.name, s.labels.get("limit")): s.value
                for f in text_string_to_metric_families(text) for s in f.samples
                if s.name.startswith("surgewatch_log_loss")}

    for i, (rates, raised) in enumerate(out[:2]):
        sink.write_interval(rates + raised + [stats(i, 1000.0 + i)])
    assert values() == {("surgewatch_log_loss_risk", "journald"): 1.0,
                        ("surgewatch_log_loss_limit", "journald"): 8.0}
    for i, (rates, raised) in enumerate(out[2:], 2):
        sink.write_interval(rates + raised + [stats(i, 1000.0 + i)])
    assert values() == {("surgewatch_log_loss_risk", "journald"): 0.0,
                        ("surgewatch_log_loss_limit", "journald"): 8.0}


def test_tail_lines():
    out, _ = stage_run()
    rate_line = format_record(out[1][0][0])
    assert rate_line.endswith("LOSS RISK journald: 100 msgs in 2s > burst 40 per 5s, dropping")
    o, c = [a for _, raised in out for a in raised]
    assert format_record(o).split(" ", 3)[3] == (
        "#0      ALERT  log loss risk  u.service  50.0/s > 8.00/s = journald burst 40 per 5s "
        "(test u.service)  top journald:/run/systemd/journal/stdout")
    assert format_record(c).split(" ", 3)[3] == (
        "#9      ALERT closed (below limit)  log loss risk  u.service  peak 50.0/s over 10.0s"
        "  journald burst 40 per 5s (test u.service)")
    lr = LossRisk(Limits(), {"/a/*": 1})
    recs, _ = run(lr, [{"s.service": {"/a/x": 5}}])
    assert format_record(recs[0][0]).endswith("LOSS RISK capacity /a/*: 5.00/s > 1.00/s")


def test_table_loss_column_and_live_rows():
    lr = LossRisk(Limits(default=(1.0, 2, 2)), {"/var/log/*.log": 1})
    recs, _ = run(lr, [{"a.service": {STDOUT: 5, "/var/log/a.log": 1},
                        "b.service": {"/var/log/b.log": 2}}])
    assert lr.marks == {("a.service", STDOUT): {"journald"},
                        ("a.service", "/var/log/a.log"): {"capacity"},
                        ("b.service", "/var/log/b.log"): {"capacity"}}
    rows = [PathTotal("a.service", STDOUT, [7], 5, 50, 5.0, 50.0, 0.5),
            PathTotal("c.service", "/var/log/c.log", [8], 5, 50, 5.0, 50.0, 0.5)]
    lines = render_table(rows, 120, "t", risks=lr.marks).splitlines()
    assert lines[1].split()[-1] == "LOSS"
    assert lines[2].split()[-1] == "journald" and lines[3].split()[-1] == "-"
    assert "LOSS" not in render_table(rows, 120, "t")
    live = LiveModel()
    live.add_interval(recs[0], {}, 1.0)
    by = {r.service: r for r in live.rows()}
    assert (by["a.service"].alerts, by["a.service"].loss_risk) == \
        (("loss",), ("capacity", "journald"))
    assert (by["b.service"].alerts, by["b.service"].loss_risk) == (("loss",), ("capacity",))
    live.add_interval([], {}, 1.0)
    assert all(r.alerts == () for r in live.rows())
