"""`surgewatch snapshot` end to end over a stand-in collector (no probes): the text table a
pipe gets, -p from the per-process counts, alerts judged as for a new service, and the
short flags and [INTERVAL] [COUNT] as click parses them."""
import pytest

from tests.support.cli import cli_runner
from collector.aggregate.logrates import aggregate_interval
from collector.aggregate.lossrisk import LossRisk
from collector.aggregate.resets import ServiceResets
from collector.cli import main
from collector.commands import snapshot
from collector.pipeline import alerts as alert_stage
from collector.aggregate.selection import Selection
from collector.host.journald_limits import RateLimit
from collector.pipeline.runtime import Interval
from collector.records.model import LogWrite, stats_record

BURST = [LogWrite(10, "app", "app.service", "/var/log/app.log", 3000, 120_000),
         LogWrite(11, "app", "app.service", "/var/log/app.log", 1, 40),
         LogWrite(20, "nginx", "nginx.service", "/var/log/nginx/a.log", 7, 700)]


class StandIn:
    """What run_snapshot uses of a Collector: three intervals of 1 s, `writes` (BURST) in
    each."""

    resets = object()
    started_wall = 1000.0

    def __init__(self, lengths=(1.0, 1.0, 1.0), writes=BURST):
        self.lengths = lengths
        self.writes = writes
        self.last_writes = []
        self.closed = False

    def begin(self):
        pass

    def meta(self, interval, mode, argv):
        return {"host": "web1", "ts": 1000.0, "interval": interval}

    def run(self, duration, interval, on_interval, on_tick=None, tick_s=None,
            should_stop=None):
        assert on_tick is None and tick_s is None          # not a terminal: no live view
        for seq, length in enumerate(self.lengths):
            rates = aggregate_interval(self.writes, seq, length)
            for r in rates:
                r["resets_sent"], r["resets_received"] = 0, 0
            rates.append({"seq": seq, "interval": length, "service": "client", "pids": [30],
                          "comms": ["client"], "log_writes": 0, "log_bytes": 0, "paths": [],
                          "resets_sent": 0, "resets_received": 2})
            stats = stats_record("web1", 1001.0 + seq, seq=seq, interval=length, drain_ms=1.0,
                                 keys=3, map_capacity=100, lost_events=0,
                                 unresolved_writes=0, cpu_s=0.0, rss_bytes=0)
            self.last_writes = self.writes
            on_interval(Interval(rates, stats, [], {"client": ServiceResets(
                "client", pids={30}, received=2)}, []))

    def close(self):
        self.closed = True


class Limits:
    """journald's limits as a test sets them (the two questions LossRisk asks of
    collector.host.journald_limits.JournaldLimits): one RateLimit for every unit, off
    unless given; warns `warning` (if any) when first asked, as a bad file would."""

    def __init__(self, limit=RateLimit(0.0, 0, 0, "off"), warning=None, warn=None):
        self.limit, self.warning, self.warn = limit, warning, warn

    def for_unit(self, unit):
        if self.warning:
            self.warn(self.warning)
            self.warning = None
        return self.limit

    def reaches_journald(self, path):
        return path == "/dev/log"


@pytest.fixture
def limits(monkeypatch):
    """Sets the journald limits the snapshot reads (none by default): no host files."""
    made = {"limit": RateLimit(0.0, 0, 0, "off"), "warning": None}
    monkeypatch.setattr(alert_stage, "JournaldLimits",
                        lambda root="/", warn=None: Limits(warn=warn, **made))
    return made


@pytest.fixture
def stand_in(monkeypatch, limits):
    c = StandIn()
    monkeypatch.setattr(snapshot, "build_collector", lambda *a, **kw: c)
    return c


def run(**kw):
    args = {"duration": 3.0, "interval": 1.0, "top": 20, "as_json": False,
            "msgpack_path": None, "rules": None}
    args.update(kw)
    snapshot.run_snapshot(**args)


def test_a_pipe_gets_the_final_text_table_and_the_alert(stand_in, capsys):
    run()
    out, err = capsys.readouterr()
    assert out == (
        "surgewatch snapshot web1  window 3.0s\n"
        "SERVICE        PIDS   LOG PATH               WRITES   WRITES/S     BYTES/S   SHARE\n"
        "app.service    10,11  /var/log/app.log         9003       3001   117.2 KiB   99.8%\n"
        "nginx.service  20     /var/log/nginx/a.log       21       7.00       700 B    0.2%\n"
        "\n"
        "SERVICE                       RST SENT/S  RST RECV/S     SENT     RECV\n"
        "client                              0.00        2.00        0        6\n"
        "\n"
        "TCP load: none\n")
    # 3001 writes/s for 2 intervals opens an alert at the new-service floor (1000/s)
    assert err == ("surgewatch: alert open: app.service log writes 3001 lines/s (new service, "
                   "no baseline yet; floor 1000 lines/s); top: /var/log/app.log\n")
    assert stand_in.closed


def test_pid_selection_counts_only_that_process(stand_in, capsys):
    run(selection=Selection(pids=(11,)))
    out, err = capsys.readouterr()
    assert out.splitlines()[2].split() == ["app.service", "11", "/var/log/app.log", "3",
                                           "1.00", "40", "B", "100.0%"]
    assert "client" not in out and "TCP resets: none" in out and err == ""


def test_intervals_cut_short_are_not_judged(monkeypatch, limits, capsys):
    # one full interval above the floor, then two cut short (as q does): only the full
    # one is judged, and one interval above does not open an alert (open_after 2)
    c = StandIn(lengths=(1.0, 0.1, 0.1))
    monkeypatch.setattr(snapshot, "build_collector", lambda *a, **kw: c)
    run(duration=1.2)
    out, err = capsys.readouterr()
    assert err == "" and "9003" in out


@pytest.fixture
def calls(monkeypatch):
    seen = []
    monkeypatch.setattr(snapshot, "run_snapshot", lambda **kw: seen.append(kw))
    return seen


def cli(*args):
    return cli_runner().invoke(main, ["snapshot", *args], prog_name="surgewatch")


@pytest.mark.parametrize("args,duration,interval", [
    ((), 10.0, 1.0),
    (("1", "10"), 10.0, 1.0),
    (("0.5", "4"), 2.0, 0.5),
    (("2",), 10.0, 2.0),
    (("-d", "30", "-i", "5"), 30.0, 5.0),
])
def test_interval_and_count(calls, args, duration, interval):
    assert cli(*args).exit_code == 0
    assert (calls[0]["duration"], calls[0]["interval"]) == (duration, interval)


def test_short_flags_reach_the_snapshot(calls):
    res = cli("-n", "5", "-s", "nginx*", "-s", "app.service", "-p", "42", "-p", "43")
    assert res.exit_code == 0, res.output
    kw = calls[0]
    assert kw["top"] == 5 and kw["as_json"] is False
    assert kw["selection"] == Selection(("nginx*", "app.service"), (42, 43))
    assert kw["alerts"].warmup == 30                       # the configured detector


@pytest.mark.parametrize("args,words", [
    (("1", "-i", "2"), "interval is given twice"),
    (("1", "10", "-d", "5"), "COUNT and -d/--duration"),
    (("-p", "abc"), "'abc' is not a valid integer"),
    (("5", "1", "x"), "unexpected extra argument"),
])
def test_usage_errors_one_line_exit_2(calls, args, words):
    res = cli(*args)
    errors = [l for l in res.stderr.splitlines() if l.startswith("Error:")]
    assert res.exit_code == 2 and len(errors) == 1 and words in errors[0], res.stderr
    assert calls == []


def test_help_has_examples_and_keys(calls):
    out = cli("--help").stdout
    assert "surgewatch snapshot 1 30" in out and "q quit" in out
    assert "[OPTIONS] [INTERVAL] [COUNT]" in out


def test_an_alert_still_open_after_its_flood_ended_gives_its_peak(capsys):
    """The window ended in the intervals an alert waits before closing: its last rate is 0,
    so the line says the peak and that it is below the threshold now."""
    det = snapshot.warm_detector()
    flood = aggregate_interval(BURST, 0, 1.0)
    for seq, recs in enumerate([flood, flood, []]):
        det.observe(1001.0 + seq, 1.0, recs)
    snapshot._alerts_note(det)
    assert capsys.readouterr().err == (
        "surgewatch: alert open: app.service log writes 0 lines/s (new service, no baseline "
        "yet; floor 1000 lines/s); top: /var/log/app.log; peak 3001/s, now below its threshold (it "
        f"closes after {det.config.close_after} intervals below)\n")


def test_msgpack_stream_has_the_alerts_the_snapshot_announced(stand_in, tmp_path, capsys):
    """As the daemon writes them: after the interval's rate and reset records, before its
    stats record; so `tail` and `plot` of the file show the alert stderr named."""
    from collector.records import model
    from collector.records.source import open_records

    plain_run = stand_in.run
    stand_in.meta = lambda interval, mode, argv: model.meta_record(
        "web1", 1000.0, interval, {"logwrites": {"enabled": True}}, "6.1", mode=mode,
        version="t")

    def run_with_records(duration, interval, on_interval, **kw):    # as runtime.py makes them
        def full(iv):
            iv.rates[:] = [model.rate_record("web1", iv.stats["ts"], **r) for r in iv.rates]
            on_interval(iv)
        plain_run(duration, interval, full, **kw)
    stand_in.run = run_with_records
    path = tmp_path / "s.msgpack"
    run(msgpack_path=str(path))
    recs = list(open_records(str(path), lambda *a: None))
    kinds = [(r["type"], r.get("seq")) for r in recs]
    assert kinds == [("meta", None)] + [k for seq in range(3) for k in (
        [("rate", seq)] * 3 + ([("alert", 1)] if seq == 1 else []) + [("stats", seq)])]
    alert = next(r for r in recs if r["type"] == "alert")
    assert (alert["state"], alert["service"], alert["signal"], alert["reason"],
            alert["rate"]) == ("open", "app.service", "log_writes_per_s", "new_service", 3001.0)
    assert "alert open: app.service" in capsys.readouterr().err


# -- the loss-risk check (docs/detection.md, "Loss risk"), as the daemon runs it ----------
STDOUT = "journald:/run/systemd/journal/stdout"
CHATTY = BURST + [LogWrite(40, "chatty", "chatty.service", STDOUT, 150, 15_000)]


def with_records(stand_in):
    """stand_in's rate records made as runtime.py makes them (for the msgpack stream)."""
    from collector.records import model

    plain_run = stand_in.run
    stand_in.meta = lambda interval, mode, argv: model.meta_record(
        "web1", 1000.0, interval, {"logwrites": {"enabled": True}}, "6.1", mode=mode,
        version="t")

    def run_with_records(duration, interval, on_interval, **kw):
        def full(iv):
            iv.rates[:] = [model.rate_record("web1", iv.stats["ts"], **r) for r in iv.rates]
            on_interval(iv)
        plain_run(duration, interval, full, **kw)
    stand_in.run = run_with_records


def records(path):
    from collector.records.source import open_records
    return list(open_records(str(path), lambda *a: None))


def test_a_capacity_exceeded_gives_the_loss_column_and_the_open_risk(stand_in, capsys):
    # app.log at 3001 lines/s against a capacity of 1000 in every interval
    run(capacity=(("/var/log/app*.log", 1000.0),))
    out, err = capsys.readouterr()
    assert out.splitlines()[1:4] == [
        "SERVICE        PIDS   LOG PATH               WRITES   WRITES/S     BYTES/S   SHARE"
        "      LOSS",
        "app.service    10,11  /var/log/app.log         9003       3001   117.2 KiB   99.8%"
        "  capacity",
        "nginx.service  20     /var/log/nginx/a.log       21       7.00       700 B    0.2%"
        "         -"]
    assert err.splitlines()[1:] == [
        "surgewatch: loss risk: app.service above its capacity /var/log/app*.log: 3001 "
        "lines/s, capacity 1000"]


def test_a_capacity_not_reached_shows_nothing(stand_in, capsys):
    run(capacity=(("/var/log/nginx/*", 7.0),))         # exactly at it: not above
    out, err = capsys.readouterr()
    assert "LOSS" not in out.splitlines()[1] and "loss risk" not in err
    assert out.splitlines()[2].split()[-1] == "99.8%"


def test_journald_limit_alert_in_the_stream_whatever_is_shown(monkeypatch, limits, tmp_path,
                                                              capsys):
    """chatty.service: 150 lines/s to journald's stdout stream against a burst of 200 per
    2 s: over from the second interval (300 in 2 s). Shown only app.service (-s): no LOSS
    column, no line; the msgpack stream keeps every record, the alert among them."""
    limits["limit"] = RateLimit(2.0, 200, 200, "test")
    c = StandIn(writes=CHATTY)
    monkeypatch.setattr(snapshot, "build_collector", lambda *a, **kw: c)
    with_records(c)
    path = tmp_path / "s.msgpack"
    run(msgpack_path=str(path), selection=Selection(("app.service",)))
    out, err = capsys.readouterr()
    assert "LOSS" not in out and "chatty" not in out and "loss risk" not in err
    recs = records(path)
    kinds = [(r["type"], r.get("seq"), r.get("signal")) for r in recs]
    assert kinds == [("meta", None, None)] + [k for seq in range(3) for k in (
        [("rate", seq, None)] * 4
        + ([("alert", 1, "log_writes_per_s"), ("alert", 1, "log_loss_risk")] if seq == 1
           else []) + [("stats", seq, None)])]
    (risk,) = [r for r in recs if r.get("signal") == "log_loss_risk"]
    assert (risk["state"], risk["service"], risk["reason"], risk["rate"], risk["threshold"],
            risk["started"]) == ("open", "chatty.service", "journald_rate_limit", 150.0,
                                 100.0, 1001.0)
    chatty = [r for r in recs if r["type"] == "rate" and r["service"] == "chatty.service"]
    assert [[e["messages"] for e in r.get("loss_risk", ())] for r in chatty] == [
        [], [300], [300]]


def test_journald_limit_shown_when_its_service_is(monkeypatch, limits, capsys):
    limits["limit"] = RateLimit(2.0, 200, 200, "test")
    c = StandIn(writes=CHATTY)
    monkeypatch.setattr(snapshot, "build_collector", lambda *a, **kw: c)
    run(selection=Selection(("chatty*",)))
    out, err = capsys.readouterr()
    assert out.splitlines()[1:3] == [
        "SERVICE         PIDS  LOG PATH                               WRITES   WRITES/S"
        "     BYTES/S   SHARE      LOSS",
        "chatty.service  40    journald:/run/systemd/journal/stdout      450      150.0"
        "    14.6 KiB  100.0%  journald"]
    # a service over its journald limit is also a flood to the detector (no baseline of
    # its own yet: docs/detection.md, "A start in the middle of an incident")
    assert err == ("surgewatch: alert open: chatty.service log writes 150 lines/s (over its "
                   "journald rate limit 100 lines/s; no baseline of its own yet); top: "
                   "journald:/run/systemd/journal/stdout\n"
                   "surgewatch: loss risk: chatty.service above its journald rate limit: "
                   "300 messages in 2s, burst 200 per 2s (test)\n")


def test_a_pid_shown_carries_its_services_risk():
    """-p rebuilds the rate records from the writes: the service's loss_risk goes onto
    them (the live view's marker is the service's)."""
    rates = aggregate_interval(BURST, 0, 1.0)
    rates[0]["loss_risk"] = [{"limit": "capacity"}]
    sel = Selection(pids=(11,)).select(rates, {}, writes=BURST, seq=0, interval_s=1.0)
    snapshot._carry_risk(rates, sel.rates)
    assert [(r["service"], r.get("loss_risk")) for r in sel.rates] == [
        ("app.service", [{"limit": "capacity"}])]


def test_limit_warnings_are_said_after_the_window(monkeypatch, limits, capsys):
    """Not while the live view draws: after the table and the other notes."""
    limits["warning"] = "/etc/systemd/journald.conf: cannot read (Permission denied)"
    c = StandIn(writes=CHATTY)
    monkeypatch.setattr(snapshot, "build_collector", lambda *a, **kw: c)
    run()
    out, err = capsys.readouterr()
    assert err.splitlines()[-1] == ("surgewatch: note: /etc/systemd/journald.conf: cannot "
                                    "read (Permission denied)")
    assert "chatty.service" in out and "LOSS" not in out     # journald off: no risk


def test_a_failing_check_costs_only_itself(stand_in, monkeypatch, capsys):
    def broken(self, ts, interval_s, rates):
        raise KeyError("paths")
    monkeypatch.setattr(LossRisk, "observe", broken)
    run()
    out, err = capsys.readouterr()
    assert "9003" in out and "alert open: app.service" in err
    assert err.splitlines()[-1] == "surgewatch: note: loss-risk check failed: KeyError: 'paths'"
    assert err.count("loss-risk check failed") == 1           # three intervals, said once


def screen(text):
    """What a terminal shows for text: a carriage return moves back to the line's start,
    the characters after it overwrite the old ones (and leave the rest standing)."""
    lines = []
    for raw in text.split("\n"):
        cells, col = [], 0
        for ch in raw:
            if ch == "\r":
                col = 0
                continue
            cells[col:col + 1] = [ch]
            col += 1
        lines.append("".join(cells).rstrip())
    return lines


def test_the_terminal_header_is_not_mixed_with_the_loading_note(stand_in, monkeypatch):
    """On a terminal "compiling and attaching probes..." stands on the line the final table
    then starts on (the live view runs on the other screen): it is wiped, not overwritten
    by a shorter header ("window 3.0sprobes...")."""
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    monkeypatch.setattr(snapshot.sys, "stdout", out)
    monkeypatch.setattr(snapshot, "_live_view", lambda title, top: None)
    run()
    assert screen(out.getvalue())[0] == "surgewatch snapshot web1  window 3.0s"

