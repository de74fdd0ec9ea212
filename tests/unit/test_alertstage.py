"""AlertStage: detector events -> `alert` records and log lines, as `surgewatch run` uses."""
import io

import msgpack
import pytest

from collector.records import model
from collector.pipeline.alerts import AlertStage
from collector.records.stream import encode, read_records


def interval(stage, i, services):
    ts = 1000.0 + i
    rates = [model.rate_record("h", ts, seq=i, interval=1.0, service=s, pids=[1], comms=["x"],
                               log_writes=n, log_bytes=n * 80,
                               paths=[{"path": f"/var/log/{s}.log", "writes": n,
                                       "bytes": n * 80, "pids": [1]}])
             for s, n in services.items()]
    stats = model.stats_record("h", ts, seq=i, interval=1.0, drain_ms=1, keys=1,
                               map_capacity=10, lost_events=0,
                               unresolved_writes=0, cpu_s=0, rss_bytes=1)
    return stage.interval(rates, stats, [])


def test_flood_gives_open_and_close_records_and_log_lines():
    lines = []
    stage = AlertStage("web1", log=lambda level, msg, key=None: lines.append((level, msg)))
    out = []
    i = 0
    for _ in range(40):
        out += interval(stage, i, {"app.service": 10}); i += 1
    for _ in range(4):
        out += interval(stage, i, {"app.service": 5000}); i += 1
    for _ in range(6):
        out += interval(stage, i, {"app.service": 10}); i += 1
    opens = [r for r in out if r["state"] == "open"]
    closes = [r for r in out if r["state"] == "close"]
    assert {r["signal"] for r in opens} == {"log_writes_per_s", "log_bytes_per_s"}
    assert {r["signal"] for r in closes} == {"log_writes_per_s", "log_bytes_per_s"}
    w = next(r for r in opens if r["signal"] == "log_writes_per_s")
    assert w["type"] == "alert" and w["v"] == model.SCHEMA_VERSION and w["host"] == "web1"
    assert w["seq"] == 41 and w["started"] == 1039.0 and w["rate"] == 5000.0
    assert w["baseline"] == 10.0 and w["ratio"] == 500.0
    assert w["top"]["paths"][0]["path"] == "/var/log/app.service.log"
    c = next(r for r in closes if r["signal"] == "log_writes_per_s")
    assert c["close_reason"] == "recovered" and c["ended"] - c["started"] == c["duration_s"]
    # records round-trip through the stream codec
    buf = io.BytesIO(b"".join(encode(r) for r in out))
    assert list(read_records(buf, "x")) == [msgpack.unpackb(encode(r)) for r in out]
    assert [lvl for lvl, _ in lines] == ["warning", "warning", "notice", "notice"]
    assert "alert open: app.service log writes 5000 lines/s (500.0x baseline 10 lines/s)" \
        in lines[1][1] + lines[0][1]


def test_detection_failure_is_logged_not_raised():
    lines = []
    stage = AlertStage("h", log=lambda level, msg, key=None: lines.append((level, msg)))
    assert stage.interval([], {"seq": 0}, []) == []          # no ts/interval
    assert lines and lines[0][0] == "error"


def test_alert_record_builder_checks_state():
    with pytest.raises(ValueError):
        model.alert_record("h", 1.0, seq=0, state="maybe", service="s", signal="x", rate=1,
                           baseline=None, spread=None, ratio=None, threshold=1, reason="r",
                           started=0, peak=1, intervals=0, top={})
    rec = model.alert_record("h", 1.0, seq=0, state="open", service="s", signal="x", rate=1,
                             baseline=None, spread=None, ratio=None, threshold=1, reason="r",
                             started=0, peak=1, intervals=0, top=None)
    assert rec["top"] == {} and "ended" not in rec and rec["type"] == model.RECORD_ALERT
