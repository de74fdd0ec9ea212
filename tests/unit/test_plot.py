"""`surgewatch plot`: series from a synthetic stream, PNG/SVG (matplotlib) and HTML pictures."""
import random
import xml.dom.minidom

import pytest

from tests.support.cli import cli_runner
from collector.cli import main
from collector.commands.plot import OTHERS, Series, lines, load, plot
from collector.errors import BadInput
from collector.pipeline.alerts import AlertStage
from collector.records import model
from collector.records.stream import encode

T0 = 1_764_150_000.0


def synthetic(n=300, flood=(120, 180), storm=(220, 250), seed=1):
    """A daemon-like stream: steady services, a log flood on app.service and a reset storm
    on nginx.service, with the alert records the detector gives for them."""
    rnd = random.Random(seed)
    stage = AlertStage("web1")
    recs = [model.meta_record("web1", T0, 1.0, {"logwrites": {"enabled": True}}, "6.1",
                              mode="run", version="t")]
    levels = {"nginx.service": 120, "app.service": 10, "db.service": 40, "a": 3, "b": 2,
              "c": 1, "d": 1, "e": 1}
    for i in range(n):
        ts = T0 + i + 1
        rates = []
        for name, lvl in levels.items():
            v = 5000 if name == "app.service" and flood[0] <= i < flood[1] else lvl
            w = int(v * rnd.uniform(0.7, 1.3)) or 1
            r = model.rate_record("web1", ts, seq=i, interval=1.0, service=name, pids=[1],
                                  comms=["x"], log_writes=w, log_bytes=w * 100,
                                  paths=[{"path": f"/var/log/{name}.log", "writes": w,
                                          "bytes": w * 100, "pids": [1]}])
            r["resets_sent"] = 0
            r["resets_received"] = 200 if name == "nginx.service" and \
                storm[0] <= i < storm[1] else 0
            rates.append(r)
        stats = model.stats_record("web1", ts, seq=i, interval=1.0, drain_ms=1, keys=1,
                                   map_capacity=10, lost_events=0,
                                   unresolved_writes=0, cpu_s=0, rss_bytes=1)
        recs += rates + stage.interval(rates, stats, []) + [stats]
    return recs


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("plot") / "run.msgpack"
    path.write_bytes(b"".join(encode(r) for r in synthetic()))
    return path


def test_series_rates_and_alert_spans(stream_file):
    s = load(str(stream_file))
    assert len(s.ends) == 300 and s.has_resets and s.hosts == {"web1"}
    log_spans = s.spans("log")
    assert [x[0] for x in log_spans] == ["app.service"]     # writes + bytes alerts merged
    _, start, end, label = log_spans[0]
    assert T0 + 120 <= start <= T0 + 122 and T0 + 180 <= end <= T0 + 190
    assert label.startswith("alert app.service: log bytes ") and ", log writes " in label
    (svc, rstart, _, rlabel), = s.spans("received")
    assert svc == "nginx.service" and T0 + 220 <= rstart <= T0 + 222
    assert rlabel == "alert nginx.service: resets received (from 0/s)"     # baseline 0
    assert s.spans("sent") == []
    times, data = lines(s, "log", top=3)
    names = [n for n, _ in data]
    assert names == ["app.service", "nginx.service", "db.service", OTHERS]   # by volume
    app = dict(data)["app.service"]
    assert max(app) > 3000 and min(app) < 20 and len(times) == 300


def test_lines_merge_intervals_time_weighted():
    s = Series()
    for i in range(10):
        s.add({"type": "rate", "service": "a", "log_writes_per_s": 10.0 * (i % 2),
               "interval": 1.0})
        s.add({"type": "stats", "ts": T0 + i + 1, "interval": 1.0})
    times, data = lines(s, "log", max_points=5)
    assert times == [T0 + 2 * k for k in range(1, 6)]
    assert data == [("a", [5.0] * 5)]


def test_open_alert_extends_to_the_end_and_close_without_open():
    s = Series()
    s.add({"type": "alert", "state": "close", "service": "x", "signal": "log_writes_per_s",
           "started": T0, "ended": T0 + 1, "ts": T0 + 1})
    s.add({"type": "alert", "state": "open", "service": "y", "signal": "resets_sent_per_s",
           "started": T0 + 2, "ts": T0 + 3})
    s.add({"type": "stats", "ts": T0 + 9, "interval": 1.0})
    assert s.spans("log") == [("x", T0, T0 + 1, "alert x: log writes (new service)")]
    assert s.spans("sent") == [("y", T0 + 2, T0 + 9, "alert y: resets sent (new service)")]


@pytest.mark.parametrize("ext", ["png", "svg", "html"])
def test_plot_writes_a_valid_picture(stream_file, tmp_path, ext):
    out = tmp_path / f"run.{ext}"
    res = cli_runner().invoke(main, ["plot", str(stream_file), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "300 intervals" in res.output
    data = out.read_bytes()
    if ext == "png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        from PIL import Image

        with Image.open(out) as im:
            assert im.size[0] > 800 and im.size[1] > 500
    elif ext == "svg":
        doc = xml.dom.minidom.parseString(data)
        assert doc.documentElement.tagName == "svg"
        assert b"app.service" in data
    else:
        text = data.decode()
        assert text.startswith("<!DOCTYPE html>") and "<script" not in text.lower()
        svg = text[text.index("<svg"):text.index("</svg>") + 6]
        doc = xml.dom.minidom.parseString(svg)
        polylines = doc.getElementsByTagName("polyline")
        assert len(polylines) >= 2
        shaded = [r for r in doc.getElementsByTagName("rect")
                  if r.getAttribute("fill-opacity")]
        assert len(shaded) == 2                        # the flood and the storm
        assert "app.service peak" in svg and "nginx.service peak" in svg
        assert "<td>app.service</td>" in text
        assert "alert nginx.service: resets received (from 0/s)" in svg


def test_plot_without_resets_has_one_panel(tmp_path):
    recs = [r for r in synthetic(60) if r["type"] in ("meta", "rate", "stats")]
    for r in recs:
        r.pop("resets_sent", None)
        r.pop("resets_received", None)
    f = tmp_path / "s.msgpack"
    f.write_bytes(b"".join(encode(r) for r in recs))
    s = plot(str(f), str(tmp_path / "o.html"))
    assert not s.has_resets
    text = (tmp_path / "o.html").read_text()
    assert "TCP resets" not in text and "idle before reset" not in text


def test_plot_segment_directory(stream_file, tmp_path):
    seg = tmp_path / "seg"
    seg.mkdir()
    (seg / "seg-0000000001.msgpack").write_bytes(stream_file.read_bytes())
    assert len(plot(str(seg), str(tmp_path / "o.svg")).ends) == 300


def test_plot_bad_input_exit_2(tmp_path, stream_file):
    runner = cli_runner()
    res = runner.invoke(main, ["plot", str(stream_file), "-o", str(tmp_path / "x.gif")])
    assert res.exit_code == 2 and "unknown picture type .gif" in res.output
    res = runner.invoke(main, ["plot", str(tmp_path / "none"), "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "no such file" in res.output
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(b"\xc1\xc1")
    res = runner.invoke(main, ["plot", str(bad), "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2
    empty = tmp_path / "empty.msgpack"
    empty.write_bytes(encode(synthetic(1)[0]))
    with pytest.raises(BadInput, match=r"empty.msgpack: 1 record but no complete interval "
                                       r"yet \(an interval ends with its stats record\)"):
        load(str(empty))
    empty.write_bytes(b"")
    with pytest.raises(BadInput, match=r"empty.msgpack: no records in it \(empty\)"):
        load(str(empty))
    (tmp_path / "d").mkdir()
    res = runner.invoke(main, ["plot", str(tmp_path / "d"), "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2
    assert res.output == (f"surgewatch: error: {tmp_path / 'd'}: no segment files "
                          "(seg-*.msgpack) in this directory; give the directory `surgewatch "
                          "run` writes (outputs.segments.dir, default /var/lib/surgewatch) "
                          "or a stream file\n")
    with pytest.raises(BadInput, match="cannot write"):
        plot(str(stream_file), str(tmp_path / "no-dir" / "x.html"))
