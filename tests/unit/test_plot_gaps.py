"""`surgewatch plot` draws only what was recorded: a gap in the records (no daemon ran,
records dropped) breaks every line and is marked, with no idle marker or alert span in
it; --since/--until choose the range, and by default the newest run is drawn alone
instead of squeezed against the right edge (collector/commands/plot.py, plot_series.py,
collector/views/picture.py, plotfile.py, plotsvg.py)."""
import math
import xml.dom.minidom

import pytest

from tests.support.cli import cli_runner
from collector.cli import main
from collector.commands.plot import gaps, load, picture, plot, select
from collector.errors import EXIT_USAGE, BadInput
from collector.records.stream import encode
from collector.views.picture import label_side, step_runs, time_ticks

T0 = 1_764_150_000.0
GAP_S = 14 * 60


def run(start, n, interval=1.0, log=2000.0, resets=20, alert_open=None):
    """One daemon's records: meta, then n intervals of `log` writes/s for app.service and
    `resets` resets sent/s by lb.service (each with a reset record idle 60 s); an alert
    on app.service opened at interval alert_open and never closed (the daemon stopped)."""
    recs = [{"type": "meta", "ts": start, "host": "web1", "interval": interval,
             "started": start}]
    for i in range(n):
        ts = start + interval * (i + 1)
        recs += [{"type": "rate", "ts": ts, "service": "app.service", "seq": i,
                  "interval": interval, "log_writes_per_s": log,
                  "resets_sent": 0, "resets_received": 0},
                 {"type": "rate", "ts": ts, "service": "lb.service", "seq": i,
                  "interval": interval, "log_writes_per_s": 5.0,
                  "resets_sent": int(resets * interval), "resets_received": 0},
                 {"type": "reset", "ts": ts, "service": "lb.service", "direction": "sent",
                  "idle_ms": 60_000}]
        if i == alert_open:
            recs.append({"type": "alert", "state": "open", "ts": ts, "service": "app.service",
                         "signal": "log_writes_per_s", "started": ts - interval,
                         "baseline": 20.0, "ratio": 100.0, "peak": log})
        recs.append({"type": "stats", "ts": ts, "seq": i, "interval": interval, "host": "web1"})
    return recs


def gap_stream(tmp_path, before=300, after=180):
    """Run A (before s, its alert left open), 14 minutes without a daemon, run B."""
    recs = run(T0, before, alert_open=before - 60)
    recs += run(T0 + before + GAP_S, after)
    f = tmp_path / "gap.msgpack"
    f.write_bytes(b"".join(encode(dict(r, v="1.7")) for r in recs))
    return f


GAP = (T0 + 300, T0 + 300 + GAP_S)


@pytest.fixture
def drawn(monkeypatch):
    """The matplotlib figures plot() saves, kept open for the test to read."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figs = []
    real = Figure.savefig

    def keep(fig, *a, **kw):
        figs.append(fig)
        return real(fig, *a, **kw)

    monkeypatch.setattr(Figure, "savefig", keep)
    monkeypatch.setattr("matplotlib.pyplot.close", lambda *a, **kw: None)
    yield figs
    import matplotlib.pyplot as plt
    for fig in figs:
        plt.close(fig)


def finite_points(line):
    return [(x, y) for x, y in zip(line.get_xdata(), line.get_ydata()) if not math.isnan(y)]


def test_png_lines_break_at_the_gap_and_the_gap_is_marked(tmp_path, drawn):
    f = gap_stream(tmp_path)
    s = plot(str(f), str(tmp_path / "p.png"), since=T0 - 60)
    assert s.gaps == [GAP] and len(s.ends) == 480
    fig, = drawn
    axes = fig.axes
    rate_lines = [ln for ax in axes[:3] for ln in ax.get_lines()
                  if ln.get_label() in ("app.service", "lb.service")]
    assert len(rate_lines) == 3                  # log: both services; sent: lb.service
    for ln in rate_lines:
        xs, ys = list(ln.get_xdata()), list(ln.get_ydata())
        assert sum(math.isnan(y) for y in ys) == 1          # one break: the gap
        pts = finite_points(ln)
        assert not any(GAP[0] < x < GAP[1] for x, _ in pts)   # nothing drawn in it
        segments = [(xa, xb) for xa, ya, xb, yb in zip(xs, ys, xs[1:], ys[1:])
                    if not (math.isnan(ya) or math.isnan(yb))]
        assert not any(xa <= GAP[0] and xb >= GAP[1] for xa, xb in segments)   # nor across
        before = [x for x, _ in pts if x <= GAP[0]]
        after = [x for x, _ in pts if x >= GAP[1]]
        assert max(before) == GAP[0] and min(after) == GAP[1]
    for ax in axes:                               # a hatched band on every panel
        bands = [p for p in ax.patches if p.get_hatch() == "///"]
        assert [(b.get_x(), b.get_x() + b.get_width()) for b in bands] == [GAP]
    assert [t.get_text() for t in axes[0].texts if t.get_text().startswith("no data")] \
        == ["no data 14 min"]
    offsets = axes[3].collections[0].get_offsets()          # idle markers
    assert len(offsets) > 0 and not any(GAP[0] <= x <= GAP[1] for x, _ in offsets)
    shades = [p for p in axes[0].patches if p.get_hatch() != "///"]
    assert [(p.get_x(), p.get_x() + p.get_width()) for p in shades] == [(T0 + 240, GAP[0])]


def test_a_line_broken_only_by_the_gap_has_no_nan_without_it(tmp_path, drawn):
    f = tmp_path / "one.msgpack"
    f.write_bytes(b"".join(encode(dict(r, v="1.7")) for r in run(T0, 30)))
    plot(str(f), str(tmp_path / "p.png"))
    ln = next(ln for ln in drawn[0].axes[0].get_lines() if ln.get_label() == "app.service")
    assert not any(math.isnan(y) for y in ln.get_ydata())
    assert (ln.get_xdata()[0], ln.get_xdata()[-1]) == (T0, T0 + 30)


def svg_of(path):
    text = path.read_text()
    return xml.dom.minidom.parseString(text[text.index("<svg"):text.index("</svg>") + 6])


def test_html_polylines_end_before_the_gap_and_resume_after(tmp_path):
    from collector.views.plotsvg import LEFT, LEGEND, RIGHT, WIDTH

    f = gap_stream(tmp_path)
    out = tmp_path / "p.html"
    plot(str(f), str(out), since=T0 - 60)
    doc = svg_of(out)
    w = WIDTH - LEFT - LEGEND - RIGHT
    start, end = T0, T0 + 300 + GAP_S + 180

    def x(t):
        return LEFT + (t - start) / (end - start) * w

    gx0, gx1 = x(GAP[0]), x(GAP[1])
    runs = {}
    for pl in doc.getElementsByTagName("polyline"):
        name = pl.getElementsByTagName("title")[0].lastChild.data
        xs = [float(p.split(",")[0]) for p in pl.getAttribute("points").split()]
        assert not any(gx0 + 0.1 < v < gx1 - 0.1 for v in xs)
        assert max(xs) <= gx0 + 0.1 or min(xs) >= gx1 - 0.1     # one side of the gap
        runs[name] = runs.get(name, 0) + 1
    assert runs == {"app.service": 2, "lb.service": 4}        # a run on each side
    bands = [r for r in doc.getElementsByTagName("rect") if r.getAttribute("class") == "gap"]
    assert len(bands) == 4
    assert {b.getElementsByTagName("title")[0].lastChild.data for b in bands} \
        == {"no data 14 min"}
    assert all(abs(float(b.getAttribute("x")) - gx0) < 0.1 for b in bands)
    for tri in doc.getElementsByTagName("polygon"):            # idle markers: lb sent
        cx = sum(float(p.split(",")[0]) for p in tri.getAttribute("points").split()) / 3
        assert not gx0 < cx < gx1
    alert, = [r for r in doc.getElementsByTagName("rect") if r.getAttribute("fill-opacity")]
    xa, wa = float(alert.getAttribute("x")), float(alert.getAttribute("width"))
    assert abs(xa + wa - gx0) < 0.2                            # ends where the run stopped


def test_gap_rule_three_of_the_runs_intervals(tmp_path):
    def hole_of(seconds, interval=10.0):
        recs = run(T0, 5, interval=interval) + run(T0 + 50 + seconds, 5, interval=interval)
        return load_recs(tmp_path, recs).stretches()

    assert hole_of(30) == [(0, 10)]              # a restart's start-up: bridged
    assert hole_of(31) == [(0, 5), (5, 10)]      # more than 3 intervals: a gap
    recs = run(T0, 5)                            # no meta: the interval's own length
    recs = recs[1:] + [dict(r, ts=r["ts"] + 3.5) for r in run(T0 + 5, 5)[1:]]
    assert load_recs(tmp_path, recs).stretches() == [(0, 5), (5, 10)]


def load_recs(tmp_path, recs):
    f = tmp_path / "r.msgpack"
    f.write_bytes(b"".join(encode(dict(r, v="1.7")) for r in recs))
    return load(str(f))


def test_an_alert_left_open_by_a_stopped_daemon_ends_with_its_run(tmp_path):
    s = load_recs(tmp_path, run(T0, 300, alert_open=240) + run(T0 + 300 + GAP_S, 180))
    assert s.spans("log") == [("app.service", T0 + 240, T0 + 300,
                               "alert app.service: log writes 100x")]


def iso(t):
    import datetime as dt
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S")


def test_since_until_choose_the_intervals_drawn(tmp_path):
    f = gap_stream(tmp_path)
    runner = cli_runner()
    out = tmp_path / "p.html"
    res = runner.invoke(main, ["plot", str(f), "-o", str(out), "--since", iso(T0 + 100),
                               "--until", iso(T0 + 200)])
    assert res.exit_code == 0, res.output
    assert res.output == f"surgewatch: 100 intervals, 0 alerts drawn to {out}\n"
    res = runner.invoke(main, ["plot", str(f), "-o", str(out), "--since", iso(T0)])
    assert res.output == (f"surgewatch: 480 intervals, 1 alert, 1 gap without records "
                          f"drawn to {out}\n")
    s = plot(str(f), str(out), since=T0 + 250, until=T0 + 1200)
    assert (s.start(0), s.ends[-1], s.gaps) == (T0 + 250, T0 + 1200, [GAP])


@pytest.mark.parametrize(("args", "says"), [
    (["--since", iso(T0 + 400), "--until", iso(T0 + 800)], "no records between "),
    (["--until", iso(T0 - 3600)], "no records before "),
    (["--since", iso(T0 + 7200)], "no records after "),
    (["--since", iso(T0 + 200), "--until", iso(T0 + 100)], "is not before --until"),
    (["--until", "tomorrow"], "--until 'tomorrow': expected a duration ago"),
])
def test_a_range_without_records_is_one_line_exit_2(tmp_path, args, says):
    f = gap_stream(tmp_path)
    res = cli_runner().invoke(main, ["plot", str(f), "-o", str(tmp_path / "p.png")] + args)
    assert res.exit_code == EXIT_USAGE
    assert res.output.count("\n") == 1 and res.output.startswith("surgewatch: error: ")
    assert says in res.output and "Traceback" not in res.output
    assert not (tmp_path / "p.png").exists()


def test_empty_range_names_what_the_source_holds(tmp_path):
    f = gap_stream(tmp_path)
    with pytest.raises(BadInput, match=r"gap.msgpack: no records between .*; its records run "
                                       r"from .* to .*: give a --since/--until in that range"):
        select(load(str(f)), str(f), T0 + 400, T0 + 800)


def test_default_is_the_newest_run_not_squeezed_against_the_right_edge(tmp_path):
    """A day-old hour-long run and a 2-minute one in the same directory."""
    day = 86400
    seg = tmp_path / "seg"
    seg.mkdir()
    old = run(T0 - day, 3600, log=20.0)
    new = run(T0, 120, log=20.0)
    for i, r in enumerate(new):                  # a flood in its last 20 s
        if r["type"] == "rate" and r["service"] == "app.service" and r["seq"] >= 100:
            new[i] = dict(r, log_writes_per_s=3000.0)
    for k, recs in enumerate((old, new)):
        (seg / f"seg-000000000{k}.msgpack").write_bytes(
            b"".join(encode(dict(r, v="1.7")) for r in recs))
    s = load(str(seg))
    w = select(s, str(seg))
    assert (w.start(0), w.ends[-1], len(w.ends)) == (T0, T0 + 120, 120)
    note, = w.notes
    assert note.startswith("drew the newest records, from ") and "3600 earlier intervals" \
        in note and f"--since {iso(T0 - day)} draws them too" in note
    pic = picture(w, str(seg))
    assert (pic.start, pic.end, pic.gaps) == (T0, T0 + 120, [])
    w = select(s, str(seg), since=T0 - day)     # asked for: both, the day between marked
    assert len(w.ends) == 3720 and gaps(w) == [(T0 - day + 3600, T0)]


def test_a_short_gap_in_a_long_run_stays_in_the_default_picture(tmp_path):
    recs = run(T0, 3600) + run(T0 + 3600 + 120, 600)     # a 2-minute restart
    s = select(load_recs(tmp_path, recs), "x")
    assert (s.start(0), gaps(s), s.notes) == (T0, [(T0 + 3600, T0 + 3720)], [])


def test_labels_stay_in_the_plot_and_clear_of_the_legend(tmp_path, drawn):
    """A flood and an alert at the right edge: their labels turn left; no text of a
    panel overlaps its legend or leaves the plot area."""
    recs = run(T0, 120, log=20.0, alert_open=110)
    for i, r in enumerate(recs):
        if r["type"] == "rate" and r["service"] == "app.service" and r["seq"] >= 110:
            recs[i] = dict(r, log_writes_per_s=3000.0)
    f = tmp_path / "edge.msgpack"
    f.write_bytes(b"".join(encode(dict(r, v="1.7")) for r in recs))
    plot(str(f), str(tmp_path / "p.png"))
    fig = drawn[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    box = ax.get_window_extent(renderer)
    legend = ax.get_legend().get_window_extent(renderer)
    texts = [t for t in ax.texts if t.get_text().strip()]
    assert {t.get_text().strip() for t in texts} == {
        "app.service peak 3k/s", "lb.service peak 5/s", "alert app.service: log writes 100x"}
    for t in texts:
        ext = t.get_window_extent(renderer)
        assert box.x0 - 1 <= ext.x0 and ext.x1 <= box.x1 + 1, t.get_text()
        assert not ext.overlaps(legend)


def test_label_side_and_time_ticks_for_any_range():
    assert label_side(95, 0, 100, chars=10) == "left"        # the right edge
    assert label_side(10, 0, 100, gaps=[(12, 40)], chars=10) == "left"     # a gap
    assert label_side(2, 0, 100, gaps=[(5, 40)], chars=10) == "right"      # no room left
    assert label_side(50, 0, 100, gaps=[(52, 60)], chars=10) == "left"
    assert label_side(20, 0, 100, chars=10) == "right"
    # a span 40..50 between gaps: its label fits leftwards from its end, not from its start
    assert label_side(40, 0, 100, gaps=[(20, 30), (52, 60)], chars=20, t_left=50) == "left"
    start = T0 + 7.3
    for span, fmt, most in ((120, "%H:%M:%S", 8), (3 * 3600, "%H:%M", 8),
                            (3 * 86400, "%m-%d %H:%M", 8), (20 * 86400, "%Y-%m-%d", 8)):
        ticks, got = time_ticks(start, start + span)
        assert got == fmt and 2 <= len(ticks) <= most, (span, ticks)
    ticks, got = time_ticks(start, start + 30 * 3600)        # over a day: with the date
    assert got == "%m-%d %H:%M" and len(ticks) <= 8


def test_step_runs_break_at_gaps_and_log_zeros():
    bounds = [(0, 1), (1, 2), (10, 11), (11, 12)]
    assert step_runs(bounds, [1, 2, 3, 4]) == [[(0, 1), (1, 1), (1, 2), (2, 2), (10, 3),
                                                (11, 3), (11, 4), (12, 4)]]
    assert step_runs(bounds, [1, 2, 3, 4], gaps=[(2, 10)]) == [
        [(0, 1), (1, 1), (1, 2), (2, 2)], [(10, 3), (11, 3), (11, 4), (12, 4)]]
    assert step_runs(bounds, [1, 0, 3, 4], log=True) == [
        [(0, 1), (1, 1)], [(10, 3), (11, 3), (11, 4), (12, 4)]]


def test_gap_labels_say_the_duration_as_a_person_would():
    from collector.views.picture import fmt_span, gap_label

    assert [fmt_span(s) for s in (45, 14 * 60, 3.5 * 3600, 23 * 3600, 2 * 86400)] == \
        ["45 s", "14 min", "3.5 h", "23 h", "2 d"]
    assert gap_label(GAP) == "no data 14 min"
