"""`surgewatch snapshot` end to end over a stand-in collector (no probes): the text table a
pipe gets, -p from the per-process counts, alerts judged as for a new service, and the
short flags and [INTERVAL] [COUNT] as click parses them."""
import pytest
from click.testing import CliRunner

from collector.aggregate.logrates import aggregate_interval
from collector.aggregate.resets import ServiceResets
from collector.cli import main
from collector.commands import snapshot
from collector.aggregate.selection import Selection
from collector.pipeline.runtime import Interval
from collector.records.model import LogWrite, stats_record

BURST = [LogWrite(10, "app", "app.service", "/var/log/app.log", 3000, 120_000),
         LogWrite(11, "app", "app.service", "/var/log/app.log", 1, 40),
         LogWrite(20, "nginx", "nginx.service", "/var/log/nginx/a.log", 7, 700)]


class StandIn:
    """What run_snapshot uses of a Collector: three intervals of 1 s, BURST in each."""

    resets = object()
    started_wall = 1000.0

    def __init__(self, lengths=(1.0, 1.0, 1.0)):
        self.lengths = lengths
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
            rates = aggregate_interval(BURST, seq, length)
            for r in rates:
                r["resets_sent"], r["resets_received"] = 0, 0
            rates.append({"seq": seq, "interval": length, "service": "client", "pids": [30],
                          "comms": ["client"], "log_writes": 0, "log_bytes": 0, "paths": [],
                          "resets_sent": 0, "resets_received": 2})
            stats = stats_record("web1", 1001.0 + seq, seq=seq, interval=length, drain_ms=1.0,
                                 keys=3, map_capacity=100, evictions=0, lost_events=0,
                                 unresolved_writes=0, cpu_s=0.0, rss_bytes=0)
            self.last_writes = BURST
            on_interval(Interval(rates, stats, [], {"client": ServiceResets(
                "client", pids={30}, received=2)}, []))

    def close(self):
        self.closed = True


@pytest.fixture
def stand_in(monkeypatch):
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
        "client                              0.00        2.00        0        6\n")
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


def test_intervals_cut_short_are_not_judged(monkeypatch, capsys):
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
    return CliRunner().invoke(main, ["snapshot", *args], prog_name="surgewatch")


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
