"""Messages actually lost (docs/detection.md, "Messages lost"): journald's drop notices
parsed (forgeries refused), summed per unit into rate records, the log_lost alert, the
Prometheus counter and the live view's ALERT column. The real journald: the VM test in
tests/e2e/test_systemd_unit.py."""
from prometheus_client.parser import text_string_to_metric_families

from collector.aggregate.live_rows import LiveModel
from collector.aggregate.loglost import LOG_LOST, LogLost, format_lost_event
from collector.host.journald_drops import DROPPED_ID, OTHER, parse_notice, sum_notices
from collector.pipeline.alerts import AlertStage
from collector.records import model
from collector.sinks.prometheus import PrometheusSink


def notice(unit, n, **over):
    entry = {"_TRANSPORT": "driver", "MESSAGE_ID": DROPPED_ID, "N_DROPPED": str(n),
             "MESSAGE": f"Suppressed {n} messages from {unit}"}
    entry.update(over)
    return entry


def rate(service, writes=10):
    return model.rate_record("h", 10.0, seq=1, interval=1.0, service=service, pids=[5],
                             comms=["x"], log_writes=writes, log_bytes=writes * 10, paths=[])


def test_a_notice_of_journald_names_unit_and_count():
    assert parse_notice(notice("app.service", 940)) == ("app.service", 940)
    assert parse_notice(notice("user@1000.service", 1)) == ("user@1000.service", 1)


def test_forged_or_malformed_notices_are_refused():
    # a client may set MESSAGE_ID and N_DROPPED, never _TRANSPORT=driver (trusted field)
    assert parse_notice(notice("app.service", 5, _TRANSPORT="journal")) is None
    assert parse_notice(notice("app.service", 5, _TRANSPORT="stdout")) is None
    assert parse_notice(notice("app.service", 5, MESSAGE_ID="0" * 32)) is None
    for bad in ("0", "-5", "1e3", " 5", "99999999999", "٣"):
        assert parse_notice(notice("app.service", 5, N_DROPPED=bad)) is None, bad
    # the count of the field and of the text must agree
    assert parse_notice(notice("app.service", 5, MESSAGE="Suppressed 6 messages from x")) is None
    assert parse_notice(notice("app.service", 5, MESSAGE="Suppressed 5 messages from ")) is None
    assert parse_notice(notice("a\nb", 5)) is None
    assert parse_notice({"MESSAGE": "Suppressed 5 messages from app.service"}) is None


def test_sum_per_unit_bounded():
    entries = [notice("a.service", 3), notice("b.service", 4), notice("a.service", 5),
               notice("forged.service", 100, _TRANSPORT="journal")]
    assert sum_notices(entries) == {"a.service": 8, "b.service": 4}
    many = [notice(f"u{i}.service", 1) for i in range(10)]
    assert sum_notices(many, max_units=4) == {"u0.service": 1, "u1.service": 1,
                                              "u2.service": 1, "u3.service": 1, OTHER: 6}


def test_counts_go_into_rate_records_and_a_record_is_added_for_a_silent_unit():
    lost = LogLost()
    rates = [rate("app.service"), rate("db.service")]
    events = lost.observe("h", 10.0, 1, 1.0, rates, {"app.service": 940, "gone.service": 7})
    by = {r["service"]: r for r in rates}
    assert by["app.service"][LOG_LOST] == 940 and LOG_LOST not in by["db.service"]
    assert (by["gone.service"]["log_writes"], by["gone.service"][LOG_LOST],
            by["gone.service"]["pids"], by["gone.service"]["seq"]) == (0, 7, [], 1)
    assert [(e.state, e.loss.service, e.fields()["lost"]) for e in events] == \
        [("open", "app.service", 940), ("open", "gone.service", 7)]
    assert lost.totals == {"app.service": 940, "gone.service": 7}


def test_alert_opens_sums_while_open_and_closes_after_three_quiet_intervals():
    lost = LogLost()
    seen = []
    for i, drops in enumerate([{"a": 10}, {"a": 5}, {}, {"a": 1}, {}, {}, {}]):
        for ev in lost.observe("h", 100.0 + i, i, 1.0, [], drops):
            seen.append((i, ev.state, ev.fields()["lost"]))
    assert seen == [(0, "open", 10), (6, "close", 16)]
    assert lost.totals == {"a": 16} and lost.open == {}
    close = [ev for ev in lost.observe("h", 200.0, 7, 1.0, [], {"b": 3})][0].fields()
    assert close["signal"] == LOG_LOST and close["reason"] == "journald_suppressed"


class FakeDrops:
    def __init__(self, per_interval):
        self.per_interval = list(per_interval)
        self.closed = False

    def take(self):
        return self.per_interval.pop(0) if self.per_interval else {}

    def close(self):
        self.closed = True


def test_alert_stage_records_log_lines_and_prometheus():
    lines = []
    drops = FakeDrops([{"app.service": 940}, {}, {}, {}])
    stage = AlertStage("h", log=lambda level, msg, key=None: lines.append((level, msg)),
                       loss_risk=_NoRisk(), drops=drops)
    sink = PrometheusSink(serve=False)
    alerts = []
    for seq in range(4):
        rates = [rate("app.service")]
        stats = {"ts": 100.0 + seq, "interval": 1.0, "seq": seq}
        raised = stage.interval(rates, stats)
        alerts += raised
        sink.write_interval(rates + raised)
    assert [(a["state"], a["signal"], a["lost"]) for a in alerts] == \
        [("open", LOG_LOST, 940), ("close", LOG_LOST, 940)]
    assert alerts[0]["v"] == "1.12" and alerts[1]["close_reason"] == "no_drops"
    assert lines == [("warning", format_lost_event_text_open()),
                     ("notice", "lost over: app.service: no more drops; 940 messages lost "
                                "in 4s")]
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(sink.render().decode())
               for s in f.samples}
    assert samples[("surgewatch_log_lost_messages_total", (("service", "app.service"),))] == 940
    assert not any(name == "surgewatch_log_lost_messages_total" and labels != (
        ("service", "app.service"),) for name, labels in samples)
    stage.close()
    assert drops.closed


def format_lost_event_text_open():
    return ("lost: app.service: journald dropped 940 messages (its rate limit; journald's "
            "\"Suppressed\" notice)")


class _NoRisk:
    def observe(self, ts, interval_s, rates):
        return []


def test_a_failing_reader_costs_only_the_count():
    class Broken:
        def take(self):
            raise OSError("journal gone")

    lines = []
    stage = AlertStage("h", log=lambda level, msg, key=None: lines.append((level, msg)),
                       loss_risk=_NoRisk(), drops=Broken())
    assert stage.interval([rate("a")], {"ts": 1.0, "interval": 1.0, "seq": 0}) == []
    assert lines == [("error", "journald drop count failed this interval: OSError: "
                               "journal gone")]


def test_live_view_marks_lost_services():
    live = LiveModel()
    rec = rate("app.service", writes=0)
    rec[LOG_LOST] = 5
    live.add_interval([rec], {}, 1.0, [("app.service", LOG_LOST)])
    [row] = live.rows()
    assert row.service == "app.service" and row.alerts == ("lost",)


def test_format_of_the_open_line():
    lost = LogLost()
    [ev] = lost.observe("h", 1.0, 0, 1.0, [], {"x.service": 3})
    assert format_lost_event(ev) == ("lost: x.service: journald dropped 3 messages (its rate "
                                     "limit; journald's \"Suppressed\" notice)")


def test_another_root_reads_the_journal_under_it(tmp_path):
    from collector.host.journald_drops import JournaldDrops, Unavailable
    try:
        JournaldDrops(str(tmp_path))
    except Unavailable as e:
        assert str(e).startswith(f"no journal under {tmp_path} (var/log/journal, "
                                 "run/log/journal); mount the host's journal")
    else:
        raise AssertionError("a root without a journal was accepted")
    (tmp_path / "run/log/journal").mkdir(parents=True)
    assert JournaldDrops._directory(str(tmp_path)) == str(tmp_path / "run/log/journal")
    (tmp_path / "var/log/journal").mkdir(parents=True)
    assert JournaldDrops._directory(str(tmp_path)) == str(tmp_path / "var/log/journal")
    drops = JournaldDrops(str(tmp_path))           # an empty journal directory: nothing yet
    assert drops.take() == {}
    drops.close()
