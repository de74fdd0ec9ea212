"""collector.commands.tail: `surgewatch tail` over segment directories and stream files."""
import io
import json
import os

import pytest

from collector.records import model
from collector.errors import BadInput
from collector.sinks.segments import SegmentStore
from collector.records.segments import list_segments
from collector.records.stream import encode
from collector.commands.tail import format_record, keep, parse_since, run_tail


def meta(ts=1000.0):
    return model.meta_record("web1", ts, 1.0, {"logwrites": {"enabled": True}}, "6.1",
                             mode="run", argv=["surgewatch", "run"], version="0.1.0")


def stats(seq, ts, **extra):
    rec = model.stats_record("web1", ts, seq=seq, interval=1.0, drain_ms=1.0, keys=0,
                             map_capacity=10, lost_events=0,
                             unresolved_writes=0, cpu_s=0.0, rss_bytes=1)
    rec.update(extra)
    return rec


def rate(seq, ts, service, writes=10):
    return model.rate_record("web1", ts, seq=seq, interval=1.0, service=service, pids=[7, 8],
                             comms=["app"], log_writes=writes, log_bytes=writes * 100,
                             paths=[{"path": "/var/log/app.log", "writes": writes - 1,
                                     "bytes": 100, "pids": [7]},
                                    {"path": "/var/log/b.log", "writes": 1, "bytes": 1,
                                     "pids": [8]}])


def fill(directory, n=30, **kw):
    s = SegmentStore(directory, **kw)
    s.set_meta(meta())
    s.write_interval([s._meta])
    for seq in range(n):
        ts = 1000.0 + seq
        s.write_interval([rate(seq, ts, "app.service"), rate(seq, ts, "db.service", 3),
                          stats(seq, ts)])
    return s


class TTY(io.StringIO):
    def isatty(self):
        return True


def tail(source, **kw):
    out, err = kw.pop("stdout", io.StringIO()), io.StringIO()
    code = run_tail(source, stdout=out, stderr=err, **kw)
    return code, out.getvalue(), err.getvalue()


def test_parse_since():
    assert parse_since("90s", now=1000) == 910
    assert parse_since("10m", now=10000) == 9400
    assert parse_since("2h", now=10000) == 10000 - 7200
    assert parse_since("1d", now=100000) == 100000 - 86400
    assert parse_since("1700000000") == 1700000000.0
    assert parse_since("2026-01-31T14:05:00+00:00") == 1769868300.0
    with pytest.raises(BadInput, match="--since 'yesterday'"):
        parse_since("yesterday")


def test_keep_filters():
    r = rate(0, 1000.0, "app.service")
    assert keep(r) and keep(r, since=1000.0) and not keep(r, since=1000.1)
    assert keep(r, services=("app.*",)) and not keep(r, services=("db.*",))
    assert not keep(stats(0, 1000.0), services=("app.*",))



def test_keep_by_pid_rate_reset_and_alert_records_naming_it():
    r = rate(0, 1000.0, "app.service")                       # pids [7, 8]
    reset = {"type": "reset", "ts": 1000.0, "service": "app.service", "pid": 9}
    alert = {"type": "alert", "ts": 1000.0, "service": "app.service", "top": {"pids": [8]}}
    assert [keep(x, pids=(8,)) for x in (r, reset, alert)] == [True, False, True]
    assert [keep(x, pids=(9,)) for x in (r, reset, alert)] == [False, True, False]
    assert not keep(stats(0, 1000.0), pids=(7,)) and not keep(meta(), pids=(7,))
    assert keep(r, pids=(7,), services=("app.*",)) and not keep(r, pids=(7,), services=("db*",))
    assert not keep({"type": "alert", "top": "junk"}, pids=(7,))
    assert keep({"type": "dropped", "ts": 1000.0}, pids=(7,))   # a gap always shows


def test_pid_filter_from_a_segment_dir(tmp_path):
    fill(tmp_path / "seg", n=3).close()
    code, out, _ = tail(tmp_path / "seg", as_json=True, pids=(8,), services=("db.*",))
    recs = [json.loads(l) for l in out.splitlines()]
    assert code == 0 and [(r["type"], r["service"], r["seq"]) for r in recs] == [
        ("rate", "db.service", s) for s in range(3)]

def test_pretty_lines():
    line = format_record(rate(3, 1000.0, "app\x1b[2J.service"))
    assert "#3" in line and "app\\x1b[2J.service" in line and "\x1b" not in line
    assert "/var/log/app.log (+1 more)" in line and "pids 7,8" in line
    assert "10.0 writes/s" in line
    assert format_record(stats(0, 1000.0)) is None        # healthy: no line
    assert "undercount: lost_writes=4" in format_record(stats(0, 1000.0, lost_writes=4))
    assert "start   surgewatch 0.1.0 (run), interval 1s" in format_record(meta())


def test_json_from_segment_dir_in_order(tmp_path):
    fill(tmp_path / "seg", max_segment_bytes=4096).close()
    assert len(list_segments(tmp_path / "seg")) > 1
    code, out, err = tail(tmp_path / "seg")        # not a terminal: JSON lines
    assert code == 0 and err == ""
    recs = [json.loads(l) for l in out.splitlines()]
    assert recs[0]["type"] == "meta"
    assert [r["seq"] for r in recs if r["type"] == "stats"] == list(range(30))


def test_service_and_since_filters(tmp_path):
    fill(tmp_path / "seg").close()
    code, out, _ = tail(tmp_path / "seg", as_json=True, services=("db.*",), since=1025.0)
    recs = [json.loads(l) for l in out.splitlines()]
    assert [(r["service"], r["seq"]) for r in recs] == [("db.service", s) for s in range(25, 30)]


def test_pretty_in_a_terminal(tmp_path):
    fill(tmp_path / "seg", n=2).close()
    code, out, _ = tail(tmp_path / "seg", stdout=TTY())
    lines = out.splitlines()
    assert len(lines) == 1 + 4                      # meta, 2 services x 2 intervals
    assert "app.service" in lines[1] and "db.service" in lines[2]


def test_cut_segment_reports_and_keeps_whole_records(tmp_path):
    fill(tmp_path / "seg", n=5).close()
    (_, path), = list_segments(tmp_path / "seg")
    os.truncate(path, os.path.getsize(path) - 3)
    code, out, err = tail(tmp_path / "seg", as_json=True)
    assert code == 0
    assert err.startswith(f"surgewatch: note: {path}: offset ") and "truncated record" in err
    recs = [json.loads(l) for l in out.splitlines()]
    assert [r["seq"] for r in recs if r["type"] == "stats"] == [0, 1, 2, 3]


def test_stream_file_and_corrupt_file(tmp_path):
    f = tmp_path / "one.msgpack"
    f.write_bytes(encode(meta()) + encode(stats(0, 1000.0)))
    code, out, _ = tail(f, as_json=True)
    assert code == 0 and len(out.splitlines()) == 2
    f.write_bytes(encode(meta()) + b"\xc1garbage")
    code, out, err = tail(f, as_json=True)
    assert code == 2 and len(out.splitlines()) == 1 and "surgewatch: error:" in err


def test_missing_source(tmp_path):
    with pytest.raises(BadInput, match="no such file or directory"):
        tail(tmp_path / "nope")



def test_directory_without_segments_says_so_on_stderr(tmp_path):
    """Not an error (the daemon may not have written yet), but never silence."""
    code, out, err = tail(tmp_path, as_json=True)
    assert (code, out) == (0, "")
    assert err == (f"surgewatch: note: {tmp_path}: no segment files (seg-*.msgpack) in it; "
                   "the daemon's are in outputs.segments.dir (default /var/lib/surgewatch)\n")
    code, out, err = tail(tmp_path, as_json=True, follow=True, poll_s=0,
                          should_stop=lambda: True)
    assert code == 0 and "no segment files (seg-*.msgpack) yet, waiting;" in err
    fill(tmp_path / "seg", n=1).close()
    assert tail(tmp_path / "seg", as_json=True)[2] == ""

def test_follow_from_the_end(tmp_path):
    s = fill(tmp_path / "seg", n=3, max_segment_bytes=4096)
    polls = {"n": 0}

    def should_stop():
        polls["n"] += 1
        if polls["n"] < 6:
            for seq in range(100 + polls["n"] * 20, 120 + polls["n"] * 20):
                s.write_interval([stats(seq, 2000.0 + seq)])
        return polls["n"] > 6

    code, out, _ = tail(tmp_path / "seg", as_json=True, follow=True, poll_s=0,
                        should_stop=should_stop)
    s.close()
    seqs = [json.loads(l)["seq"] for l in out.splitlines()
            if json.loads(l)["type"] == "stats"]
    assert seqs == list(range(120, 220))            # nothing older than the start
    assert len(list_segments(tmp_path / "seg")) > 2
