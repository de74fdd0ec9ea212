"""collector.commands.run without kernel: own log, stdout sink, flags, reload, outputs."""
import io
import json
import os
import signal

import pytest

from collector.commands import run as daemon
from collector.pipeline import build
from collector import config
from collector.commands import process
from collector.sinks import stdout as stdout_sink
from collector.pipeline.runtime import Interval

from collector.records import model
from collector.errors import BadInput
from collector.host.logdest import LogRules
from collector.records.segments import read_segments
from collector.records.stream import read_records


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def test_stderr_log_rate_limits_per_key_and_reports_suppressed():
    out, clock = io.StringIO(), Clock()
    log = process.StderrLog(out, clock=clock, burst=2, refill_s=60, journald=False)
    for _ in range(10):
        log("warning", "disk full", key="disk")
    assert out.getvalue().splitlines() == ["surgewatch: warning: disk full"] * 2
    log("info", "other")                          # another key still gets through
    assert out.getvalue().splitlines()[-1] == \
        "surgewatch: info: other (8 earlier messages suppressed)"
    clock.t = 61
    assert log("warning", "disk full", key="disk")


def test_stderr_log_global_cap_and_journald_prefix():
    out, clock = io.StringIO(), Clock()
    log = process.StderrLog(out, clock=clock, per_minute=5, journald=True)
    for i in range(20):
        log("error", f"problem {i}\nsecond line")
    lines = out.getvalue().splitlines()
    assert len(lines) == 5
    assert lines[0] == "<3>problem 0\\nsecond line"


def records():
    meta = model.meta_record("h", 1.0, 1.0, {"logwrites": {"enabled": True}}, "6.1",
                             mode="run", argv=["surgewatch", "run"], version="0")
    stats = model.stats_record("h", 2.0, seq=0, interval=1.0, drain_ms=1.0, keys=0,
                               map_capacity=1, lost_events=0,
                               unresolved_writes=0, cpu_s=0.0, rss_bytes=1)
    return [meta, stats]


def test_stdout_sink_json_lines_and_msgpack():
    buf = io.BytesIO()
    stdout_sink.StdoutSink("json", buf).write_interval(records())
    lines = buf.getvalue().decode().splitlines()
    assert [json.loads(l)["type"] for l in lines] == ["meta", "stats"]
    buf = io.BytesIO()
    stdout_sink.StdoutSink("msgpack", buf).write_interval(records())
    buf.seek(0)
    assert [r["type"] for r in read_records(buf, "x")] == ["meta", "stats"]


class ClosedPipe(io.BytesIO):
    def write(self, data):
        raise BrokenPipeError(32, "Broken pipe")


def test_stdout_sink_closed_pipe():
    with pytest.raises(stdout_sink.OutputClosed):
        stdout_sink.StdoutSink("json", ClosedPipe()).write_interval(records())


def test_overrides_win_over_the_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('interval = 2\n[outputs.stdout]\nformat = "json"\n'
                   '[log_rules]\nglobs = ["*.out"]\n')
    o = config.Overrides(interval=0.5, format="msgpack", segments_dir=str(tmp_path / "s"),
                         log_dirs=("/srv",))
    c = daemon.load_config(str(cfg), o)
    assert c.interval == 0.5 and c.stdout_format == "msgpack"
    assert c.segments.dir == str(tmp_path / "s")
    assert c.log_rules.dirs == ("/srv/",) and c.log_rules.globs == ("*.out",)
    assert not daemon.load_config(str(cfg), config.Overrides(no_segments=True)).segments.enabled


def test_nothing_to_write_to_is_refused(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[outputs.stdout]\nformat = "none"\n[outputs.segments]\nenabled = false\n'
                   + NO_LISTENERS)
    with pytest.raises(BadInput, match="nothing to write to"):
        daemon.load_config(str(cfg), config.Overrides())


class FakeProbe:
    name = "logwrites"

    def __init__(self):
        self.closed = False
        self.bpf = None

    def close(self):
        self.closed = True

    def clear_verdicts(self):
        self.bpf["verdicts"].clear()


class FakeCollector:
    """Runs `script(daemon, tick)` each tick; emits one interval per tick."""

    def __init__(self, rules, script, d):
        self.rules, self.script, self.d = rules, script, d
        self.probe = FakeProbe()
        self.resolver = None
        self.resets = None
        self.last_reset_records = []
        self.seq = 0
        self.begun = False
        self.reporters = []

    def report_from(self, source):
        self.reporters.append(source)

    def close(self):
        self.probe.close()

    def begin(self):
        self.begun = True

    def meta(self, interval, mode, argv):
        assert self.begun, "the first interval starts before the meta record"
        return model.meta_record("h", 1.0, interval, {}, "6.1", mode=mode, argv=argv,
                                 version="0")

    def run(self, duration, interval, on_interval, on_tick, tick_s, should_stop, wakeup_fd=None):
        tick = 0
        while True:
            reported = {}
            for source in self.reporters:
                reported.update(source.take_stats())
            stats = model.stats_record("h", 2.0, seq=self.seq, interval=interval,
                                       drain_ms=0, keys=0, map_capacity=1,
                                       lost_events=0, unresolved_writes=0, cpu_s=0,
                                       rss_bytes=1, **reported)
            self.seq += 1
            on_interval(Interval([], stats, list(self.last_reset_records), {}, []))
            if should_stop():
                return
            self.script(self.d, tick)
            on_tick(tick)
            tick += 1


# the fake daemons must not take the host's real socket path and port
NO_LISTENERS = "\n[outputs.socket]\nenabled = false\n[outputs.prometheus]\nenabled = false\n"


def run_fake(tmp_path, cfg_text, script, stdout=None):
    cfg = tmp_path / "c.toml"
    cfg.write_text(cfg_text + NO_LISTENERS)
    out = stdout if stdout is not None else io.BytesIO()
    err = io.StringIO()
    holder = {}

    def build(rules):
        holder["c"] = FakeCollector(rules, script, d)
        return holder["c"]

    d = daemon.Daemon(str(cfg), config.Overrides(), argv=["surgewatch", "run"],
                      log=process.StderrLog(err, journald=False), stdout=out, build=build)
    code = d.run()
    return code, out, err.getvalue(), holder["c"], cfg


def test_stop_signal_flushes_and_closes(tmp_path):
    def script(d, tick):
        if tick == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    code, out, err, c, _ = run_fake(tmp_path, f'[outputs.stdout]\nformat = "json"\n'
                                              f'[outputs.segments]\ndir = "{tmp_path}/seg"\n',
                                    script)
    assert code == 0 and c.probe.closed
    assert signal.getsignal(signal.SIGTERM) is before
    recs = [json.loads(l) for l in out.getvalue().decode().splitlines()]
    assert recs[0]["type"] == "meta"
    assert [r["seq"] for r in recs[1:]] == [0, 1, 2, 3]
    assert all(r["segment_dropped_records"] == 0 for r in recs[1:])
    seg = list(read_segments(tmp_path / "seg"))
    assert [r["type"] for r in seg] == ["meta"] + ["stats"] * 4
    assert "stopped by SIGTERM" in err


def test_bad_reload_keeps_running_config(tmp_path):
    def script(d, tick):
        if tick == 0:
            (tmp_path / "c.toml").write_text("interval = -1\n")
            os.kill(os.getpid(), signal.SIGHUP)
        if tick == 1:
            (tmp_path / "c.toml").write_text('[outputs.stdout]\nformat = "json"\n'
                                             "[outputs.segments]\nenabled = false\n"
                                             + NO_LISTENERS)
            os.kill(os.getpid(), signal.SIGHUP)
        if tick == 2:
            os.kill(os.getpid(), signal.SIGINT)

    code, out, err, c, cfg = run_fake(
        tmp_path, f'[outputs.stdout]\nformat = "json"\n[outputs.segments]\ndir = "{tmp_path}/seg"\n',
        script)
    assert code == 0
    assert f"reload refused, the running config stays: {cfg}: interval: " in err
    assert f"reloaded {cfg}" in err
    seg = list(read_segments(tmp_path / "seg"))
    assert [r["seq"] for r in seg if r["type"] == "stats"] == [0, 1]   # disabled at tick 1
    recs = [json.loads(l) for l in out.getvalue().decode().splitlines()]
    assert [r["seq"] for r in recs[1:]] == [0, 1, 2, 3]
    assert "segment_dropped_records" not in recs[-1]


def test_closed_stdout_only_output_stops_with_1(tmp_path):
    code, out, err, c, _ = run_fake(tmp_path, '[outputs.stdout]\nformat = "json"\n'
                                              '[outputs.segments]\nenabled = false\n',
                                    lambda d, t: None, stdout=ClosedPipe())
    assert code == 1 and c.probe.closed
    assert "no outputs left" in err


class FakeTable(dict):
    def keys(self):
        return iter(list(super().keys()))


class FakeResolver:
    def __init__(self):
        self.rules = LogRules()
        self._inodes = {(1, 0, 5): "/var/log/a.log", (1, 0, 6): object()}
        self.replayed = 0

    def change_rules(self, rules):
        self.rules = rules
        self._inodes.clear()

    def replay(self):
        self.replayed += 1
        return 7


def test_apply_rules_forgets_every_verdict_and_judges_again():
    class C:
        pass

    c = C()
    c.resolver = FakeResolver()
    c.probe = FakeProbe()
    c.probe.bpf = {"verdicts": FakeTable({(1, 0, 5): 1, (1, 0, 6): 2})}
    new = LogRules(globs=("*.out",))
    assert build.apply_rules(c, new) == 7
    assert c.resolver.rules is new and c.resolver._inodes == {}
    assert c.probe.bpf["verdicts"] == {} and c.resolver.replayed == 1
