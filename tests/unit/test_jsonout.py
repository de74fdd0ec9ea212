import io
import json

import pytest

from collector.aggregate.logrates import OTHERS, Window
from collector.errors import BadInput
from collector.records.model import SCHEMA_VERSION, LogWrite, meta_record
from collector.sinks.jsonout import dumps, snapshot_json, write_json
from collector.sinks.msgpackfile import MsgpackFileSink
from collector.records.stream import read_records

META = meta_record("web1", 1700000000.0, 2.0, {"logwrites": {"enabled": True}}, "6.1.0",
                   mode="snapshot", argv=["surgewatch", "snapshot", "--json"])
STATS = dict(seq=0, interval=2.0, drain_ms=1.5, keys=4, map_capacity=10240, evictions=0,
             lost_events=0, unresolved_writes=3, cpu_s=0.01, rss_bytes=1000)


def window():
    w = Window()
    w.add_writes([
        LogWrite(101, "app", "app.service", "/var/log/app.log", 30, 3000),
        LogWrite(102, "app", "app.service", "/var/log/app.log", 10, 1000),
        LogWrite(7, "nginx", "nginx.service", "/var/log/nginx/access.log", 20, 2000),
    ], 0, 2.0, stats=dict(STATS))
    w.add_writes([LogWrite(101, "app", "app.service", "/var/log/app-err.log", 20, 200)],
                 1, 2.0, stats=dict(STATS, seq=1))
    return w


def test_snapshot_json_exact():
    doc = snapshot_json(window(), META)
    assert doc["v"] == SCHEMA_VERSION and doc["host"] == "web1"
    assert doc["started"] == 1700000000.0 and doc["duration_s"] == 4.0 and doc["interval_s"] == 2.0
    assert doc["services"] == [
        {"service": "app.service", "pids": [101, 102], "comms": ["app"], "writes": 60,
         "bytes": 4200, "writes_per_s": 15.0, "bytes_per_s": 1050.0, "share": 0.75,
         "paths": [
             {"path": "/var/log/app.log", "pids": [101, 102], "writes": 40, "bytes": 4000,
              "writes_per_s": 10.0, "bytes_per_s": 1000.0},
             {"path": "/var/log/app-err.log", "pids": [101], "writes": 20, "bytes": 200,
              "writes_per_s": 5.0, "bytes_per_s": 50.0},
         ]},
        {"service": "nginx.service", "pids": [7], "comms": ["nginx"], "writes": 20,
         "bytes": 2000, "writes_per_s": 5.0, "bytes_per_s": 500.0, "share": 0.25,
         "paths": [{"path": "/var/log/nginx/access.log", "pids": [7], "writes": 20,
                    "bytes": 2000, "writes_per_s": 5.0, "bytes_per_s": 500.0}]},
    ]
    assert doc["stats"]["unresolved_writes"] == 6 and doc["stats"]["intervals"] == 2
    assert json.loads(dumps(doc)) == doc


def test_top_folds_services():
    doc = snapshot_json(window(), META, top=1)
    assert [s["service"] for s in doc["services"]] == ["app.service", OTHERS]
    assert doc["services"][1]["folded"] == 1 and doc["services"][1]["writes"] == 20
    assert sum(s["share"] for s in doc["services"]) == pytest.approx(1.0)


def test_empty_window_has_empty_stats():
    w = Window()
    w.add_interval([], 2.0)
    doc = snapshot_json(w, META)
    assert doc["services"] == [] and doc["stats"] == {}


def test_hostile_strings_give_valid_json():
    w = Window()
    w.add_writes([LogWrite(1, 'q"\\\n\x00\x1b', 'svc"\u2028\udcff', '/tmp/\x7f"\n\ud800.log', 1, 1)],
                 0, 1.0)
    text = dumps(snapshot_json(w, META))
    back = json.loads(text)
    svc = back["services"][0]
    assert svc["comms"] == ['q"\\\n\x00\x1b']
    assert svc["service"] == 'svc"\u2028\\xff'
    assert svc["paths"][0]["path"] == '/tmp/\x7f"\n\\ud800.log'
    text.encode("utf-8")     # no lone surrogates left


def test_write_json_to_text_and_binary_streams():
    doc = snapshot_json(window(), META)
    text = io.StringIO()
    write_json(doc, text)
    assert json.loads(text.getvalue()) == doc and text.getvalue().endswith("\n")
    raw = io.BytesIO()
    wrapper = io.TextIOWrapper(raw, encoding="ascii")
    write_json({"name": "café"}, wrapper)      # bytes go to .buffer as UTF-8
    assert json.loads(raw.getvalue().decode("utf-8")) == {"name": "café"}


def test_msgpack_file_sink_appends(tmp_path):
    path = tmp_path / "snap.msgpack"
    with MsgpackFileSink(path) as sink:
        sink.write_interval([META])
    with MsgpackFileSink(path) as sink:
        sink.write(dict(META, ts=2.0))
        sink.flush()
    with open(path, "rb") as f:
        assert [r["ts"] for r in read_records(f, str(path))] == [1700000000.0, 2.0]


@pytest.mark.parametrize("make, fix", [
    (lambda d: d / "missing" / "x.msgpack", "create the directory"),
    (lambda d: d, "not a directory"),
])
def test_msgpack_file_sink_open_errors(tmp_path, make, fix):
    path = make(tmp_path)
    with pytest.raises(BadInput) as exc:
        MsgpackFileSink(path)
    msg = str(exc.value)
    assert str(path) in msg and fix in msg and "\n" not in msg


def test_idle_buckets_give_every_index_its_bounds():
    from collector.aggregate.idle_hist import idle_buckets

    b = idle_buckets(24)
    assert len(b) == 24
    assert b[0] == {"bucket": 0, "lo_ms": 0, "hi_ms": 1, "label": "<1ms"}
    assert b[1] == {"bucket": 1, "lo_ms": 1, "hi_ms": 2, "label": "1ms-2ms"}
    assert b[12] == {"bucket": 12, "lo_ms": 2048, "hi_ms": 4096, "label": "2.05s-4.1s"}
    assert b[23] == {"bucket": 23, "lo_ms": 4194304, "hi_ms": None, "label": ">=1.17h"}
    assert all(b[i]["hi_ms"] == b[i + 1]["lo_ms"] for i in range(23))
    assert json.loads(dumps(b)) == b
