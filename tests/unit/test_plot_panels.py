"""`surgewatch plot` panels: resets sent and received apart, the automatic log axis, alert
labels with signal and ratio, the idle-before-reset panel, and the HTML picture's axes and
legend (collector/commands/plot.py, collector/views/picture.py, plotfile.py, plotsvg.py)."""
import time
import xml.dom.minidom

import pytest

from tests.support.cli import cli_runner
from collector.cli import main
from collector.commands.plot import (
    OTHERS,
    Series,
    choose_scale,
    idle_points,
    picture,
    plot,
)
from collector.records.stream import encode
from collector.views.picture import IdlePanel, log_limits, time_ticks
from collector.views.plotsvg import LEGEND, RIGHT, WIDTH, linear_ticks

T0 = 1_764_150_000.0


def rate(i, service, writes=0, sent=None, received=None, interval=2.0):
    rec = {"type": "rate", "ts": T0 + interval * (i + 1), "service": service, "seq": i,
           "interval": interval, "log_writes_per_s": writes / interval}
    if sent is not None:
        rec.update(resets_sent=sent, resets_received=received)
    return rec


def stats(i, interval=2.0, **kw):
    return dict({"type": "stats", "ts": T0 + interval * (i + 1), "interval": interval,
                 "seq": i, "host": "h"}, **kw)


def reset(service, direction, idle_ms):
    return {"type": "reset", "service": service, "direction": direction, "idle_ms": idle_ms}


def client_server(n=10, idle_ms=3000):
    """A server that aborts 4 connections per interval, each idle 3 s: 4 resets sent by
    srv, 4 received by cli, and their reset records."""
    recs = []
    for i in range(n):
        recs += [rate(i, "srv", writes=20, sent=4, received=0),
                 rate(i, "cli", sent=0, received=4)]
        recs += [reset("srv", "sent", idle_ms), reset("cli", "received", idle_ms)] * 4
        recs.append(stats(i))
    return recs


def series_of(recs):
    s = Series()
    for r in recs:
        s.add(r)
    return s


def test_sent_and_received_are_separate_series_with_exact_rates():
    s = series_of(client_server())
    assert s.rates["sent"] == {"srv": {i: 2.0 for i in range(10)}}
    assert s.rates["received"] == {"cli": {i: 2.0 for i in range(10)}}
    assert s.rates["log"] == {"srv": {i: 10.0 for i in range(10)}}
    names = [[n for n, _ in p.lines] if not isinstance(p, IdlePanel) else p.names()
             for p in picture(s, "x").panels]
    assert names == [["srv"], ["srv"], ["cli"], ["cli", "srv"]]
    assert picture(s, "x").colors["srv"] != picture(s, "x").colors["cli"]


def test_log_axis_when_the_range_spans_more_than_100x_and_forced():
    assert choose_scale([("a", [0.0, 20.0]), ("b", [2000.0])]) == "linear"    # 100x: not more
    assert choose_scale([("a", [0.0, 20.0]), ("b", [2001.0])]) == "log"
    assert choose_scale([("a", [20.0]), ("b", [3000.0])], "linear") == "linear"
    assert choose_scale([("a", [20.0])], "log") == "log"
    assert choose_scale([("a", [0.0])]) == "linear"
    assert log_limits([("a", [20.0, 0.0]), ("b", [3000.0])]) == (10.0, 10000.0)
    assert log_limits([("a", [1.0])]) == (0.1, 10.0)


def test_alert_labels_name_signal_and_peak_ratio():
    s = series_of([
        {"type": "alert", "state": "open", "service": "app", "signal": "log_writes_per_s",
         "started": T0, "ts": T0 + 1, "baseline": 10.0, "ratio": 50.0, "peak": 500.0},
        {"type": "alert", "state": "open", "service": "app", "signal": "log_bytes_per_s",
         "started": T0, "ts": T0 + 1, "baseline": 1000.0, "ratio": 4.0, "peak": 4000.0},
        {"type": "alert", "state": "close", "service": "app", "signal": "log_writes_per_s",
         "started": T0, "ended": T0 + 8, "ts": T0 + 8, "baseline": 10.0, "ratio": 1.0,
         "peak": 800.0},
        {"type": "alert", "state": "open", "service": "new", "signal": "resets_received_per_s",
         "started": T0 + 2, "ts": T0 + 3, "baseline": None, "ratio": None, "peak": 40.0},
        {"type": "alert", "state": "open", "service": "job", "signal": "resets_sent_per_s",
         "started": T0 + 2, "ts": T0 + 3, "baseline": 1619.0, "ratio": 1.2, "peak": 2000.0,
         "reason": "new_service"},
        stats(4)])
    assert s.spans("log") == [("app", T0, T0 + 10, "alert app: log bytes 4.0x, log writes 80x")]
    assert s.spans("received") == [("new", T0 + 2, T0 + 10,
                                    "alert new: resets received (new service)")]
    assert s.spans("sent") == [("job", T0 + 2, T0 + 10, "alert job: resets sent (new service)")]


def test_idle_points_exact_counts_at_the_idle_time_and_others_folded():
    recs = client_server(n=4, idle_ms=3000)
    recs.insert(0, reset("x", "received", 1))          # before the first interval closes
    recs.insert(1, reset("x", "received", None))       # no idle time: counted apart
    s = series_of(recs)
    assert s.idle_unknown == 1
    pts = idle_points(s, top=2, columns=2)             # 4 intervals in 2 columns
    assert [(n, d, t, c) for n, d, t, _, c in pts] == [
        (OTHERS, "received", T0 + 3.0, 1), ("cli", "received", T0 + 1.0, 8),
        ("srv", "sent", T0 + 2.0, 8), ("cli", "received", T0 + 5.0, 8),
        ("srv", "sent", T0 + 6.0, 8)]                  # side by side in each column
    assert [round(p[3], 6) for p in pts] == [1.0, 3000.0, 3000.0, 3000.0, 3000.0]


def test_idle_note_counts_records_and_the_rest():
    recs = client_server(n=2)
    recs.insert(0, reset("x", "sent", None))
    recs[-1] = stats(1, reset_records_suppressed=7)
    panel = picture(series_of(recs), "x").panels[-1]
    assert panel.note == ("16 resets with an idle time (from reset records); 1 without one "
                          "(no socket, handshake); 7 more counted without a record "
                          "(per-interval cap)")


def test_linear_and_time_ticks_are_round():
    assert linear_ticks(130.0) == (150.0, [0.0, 25.0, 50.0, 75.0, 100.0, 125.0, 150.0])
    assert linear_ticks(10.4) == (12.0, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0])
    assert linear_ticks(9000.0)[1] == [0.0, 2000.0, 4000.0, 6000.0, 8000.0, 10000.0]
    start = T0 + 7.3
    ticks, fmt = time_ticks(start, start + 300)
    off = time.localtime(start).tm_gmtoff
    assert fmt == "%H:%M" and len(ticks) == 5
    assert all((t + off) % 60 == 0 and start <= t <= start + 300 for t in ticks)
    ticks, fmt = time_ticks(start, start + 40)
    assert fmt == "%H:%M:%S" and all((t + off) % 5 == 0 for t in ticks) and len(ticks) == 8


@pytest.fixture
def html_doc(tmp_path):
    recs = client_server(n=30)
    recs += [rate(30 + i, "srv", writes=6000) for i in range(1)] + [stats(30)]
    f = tmp_path / "s.msgpack"
    f.write_bytes(b"".join(encode(dict(r, v="1.3", host="h")) for r in recs))
    out = tmp_path / "p.html"
    plot(str(f), str(out))
    text = out.read_text()
    return xml.dom.minidom.parseString(text[text.index("<svg"):text.index("</svg>") + 6])


def test_html_legend_beside_the_plot_and_log_axis_labels(html_doc):
    plot_right = WIDTH - LEGEND - RIGHT
    texts = {t.lastChild.data: t for t in html_doc.getElementsByTagName("text")
             if t.lastChild is not None and t.lastChild.nodeType == t.TEXT_NODE}
    for name in ("srv", "cli", "cli (received)", "srv (sent)"):
        assert float(texts[name].getAttribute("x")) > plot_right     # never over the data
    assert "log writes/s (log)" in texts                 # 10/s .. 3000/s: more than 100x
    assert {"1", "10", "100", "1k", "10k"} <= set(texts)
    assert {"1s", "10s"} <= set(texts) and "idle before reset" in texts
    for t in html_doc.getElementsByTagName("text"):      # every label inside the picture
        assert 0 <= float(t.getAttribute("x")) <= WIDTH


def test_html_idle_panel_markers_one_per_cell(html_doc):
    circles = html_doc.getElementsByTagName("circle")    # cli received: filled circles
    triangles = html_doc.getElementsByTagName("polygon")   # srv sent: hollow triangles
    assert len(circles) == 30 + 1 and len(triangles) == 30 + 1      # + a legend swatch
    tips = [c.getElementsByTagName("title")[0].lastChild.data for c in circles[:-1]]
    assert all(t == "cli received: 4 at 3s" for t in tips)
    ys = {c.getAttribute("cy") for c in circles[:-1]}
    assert len(ys) == 1                                  # the ridge: one height


def test_png_with_every_panel_and_cli_scale_flag(tmp_path):
    f = tmp_path / "s.msgpack"
    f.write_bytes(b"".join(encode(dict(r, v="1.3", host="h")) for r in client_server()))
    for scale in ("log", "linear"):
        out = tmp_path / f"{scale}.png"
        res = cli_runner().invoke(main, ["plot", str(f), "-o", str(out), "--scale", scale])
        assert res.exit_code == 0, res.output
        assert res.output == f"surgewatch: 10 intervals, 0 alerts drawn to {out}\n"
        from PIL import Image

        with Image.open(out) as im:
            assert im.size[1] > 4 * 250             # four panels
    res = cli_runner().invoke(main, ["plot", str(f), "-o", str(tmp_path / "x.png"),
                                    "--scale", "ln"])
    assert res.exit_code == 2 and "'ln' is not one of 'auto', 'linear', 'log'" in res.output


def test_hostile_records_are_skipped_or_escaped_and_the_picture_is_made(tmp_path):
    recs = client_server(n=3)
    recs[0] = dict(recs[0], service="evil\x1b[2J\nname")
    recs += [
        {"type": "alert", "state": "open", "service": "srv", "signal": ["x"], "started": T0},
        {"type": "alert", "state": "open", "service": "srv", "signal": "log_writes_per_s",
         "started": "soon", "ts": None},                       # no usable time: skipped
        {"type": "alert", "state": "close", "service": "cli",
         "signal": "resets_received_per_s", "started": T0 + 5, "ended": T0 + 1,
         "ts": T0 + 1},                                         # ended before it started
        rate(3, "srv", writes=10), dict(rate(3, "cli"), log_writes_per_s=float("inf")),
        reset("cli", "received", 1e300), stats(3),
        dict(stats(4), interval=1e300), dict(stats(5), ts=float("nan"))]
    s = series_of(recs)
    assert len(s.ends) == 4                                    # the last two refused
    assert "evil\\x1b[2J\\nname" in s.rates["log"] and "cli" not in s.rates["log"]
    assert s.idle_unknown == 1 and len(s.alerts) == 1
    assert s.spans("received") == [("cli", T0 + 5, T0 + 5,
                                    "alert cli: resets received (new service)")]
    f = tmp_path / "s.msgpack"
    f.write_bytes(b"".join(encode(dict(r, v="1.3", host="h")) for r in recs))
    for ext in ("html", "png"):
        plot(str(f), str(tmp_path / f"p.{ext}"))
    text = (tmp_path / "p.html").read_text()
    xml.dom.minidom.parseString(text[text.index("<svg"):text.index("</svg>") + 6])
    assert "\x1b" not in text


def test_a_line_equal_to_an_earlier_one_is_dashed_so_both_show(tmp_path):
    from collector.views.picture import coinciding

    assert coinciding([("cli", [0, 4, 4, 0]), ("nginx", [0, 4, 4, 0]), ("x", [1, 4, 0, 0])]) \
        == {"nginx"}
    assert coinciding([("a", [1, 2, 3]), ("b", [1, 5, 6])]) == set()     # 1 of 3 equal
    recs = []
    for i in range(6):                   # the balancer's resets reach client and backend
        recs += [rate(i, "frontend", sent=0, received=4 * (i % 2)),
                 rate(i, "nginx", sent=0, received=4 * (i % 2)), stats(i)]
    f = tmp_path / "s.msgpack"
    f.write_bytes(b"".join(encode(dict(r, v="1.3", host="h")) for r in recs))
    plot(str(f), str(tmp_path / "p.html"))
    text = (tmp_path / "p.html").read_text()
    dashed = [line for line in text.splitlines() if "stroke-dasharray" in line]
    assert len(dashed) == 2                                    # the line and its legend
    assert "<title>nginx</title>" in dashed[0] and 'stroke="#d62728"' in dashed[1]
