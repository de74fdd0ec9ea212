"""`surgewatch plot SOURCE -o FILE.png|FILE.svg|FILE.html`: rates over time.

Panels sharing the time axis: log writes/s, TCP resets sent/s and received/s (separate,
so a client's received resets never hide under its server's sent ones), and the idle
time before each reset (from `reset` records), where a load balancer's idle timeout is a
row of resets at one height. The top services are drawn and named, the rest summed as
"(others)"; alert spans are shaded on the panel of their signal and labelled with the
signal and ratio. A gap in the records (collector/commands/plot_series.py) is drawn as a
gap: no bin, line, idle marker or alert span crosses it.

Which records: --since/--until (unix seconds here), else the newest stretch of records
back to the first gap that is longer than everything after it (a 2-minute run after a
day-old one is drawn alone, not squeezed against the right edge; a restart's short gap in
an hour-long run stays in the picture, marked). This module loads and shapes;
collector/views/plotfile.py (PNG, SVG) and plotsvg.py (HTML) draw.
"""
import datetime as dt
import math
import os

from collector.aggregate.logrates import OTHERS
from collector.commands.plot_series import Series
from collector.errors import BadInput
from collector.records.segments import list_segments
from collector.records.source import notes_only, open_records
from collector.views.picture import (
    IdlePanel,
    Panel,
    Picture,
    colors,
    fmt_span,
    picture_type,
)
from collector.views.text import escape, plural

MAX_POINTS = 1500          # intervals are merged into at most this many points
IDLE_COLUMNS = 150         # time columns of the idle panel
LOG_SCALE_SPAN = 100.0     # auto: a log axis when the panel's max / min exceeds this
SCALES = ("auto", "linear", "log")
PANELS = (("log", "log writes/s"), ("sent", "TCP resets sent/s"),
          ("received", "TCP resets received/s"))
IDLE_LABEL = "idle before reset"


def load(source, since=None):
    """Series from a segment directory or a stream file (segments last written before
    `since` skipped); BadInput when there is nothing to plot, saying what the source
    holds."""
    notes = []
    s = Series()
    for rec in open_records(source, notes_only(notes.append), newer_than=since):
        s.add(rec)
    if not s.ends:
        raise BadInput(_nothing_to_plot(str(source), s))
    s.notes = notes
    return s


def select(series, source, since=None, until=None):
    """The Series of the range to draw, with notes on what was left out; BadInput (one
    line) when the range holds no interval."""
    n = len(series.ends)
    if since is not None and until is not None and since >= until:
        raise BadInput(f"--since {_clock(since)} is not before --until {_clock(until)}")
    b = n if until is None else next((i for i in range(n) if series.start(i) >= until), n)
    if since is None:
        a = _default_start(series, b) if b else 0
    else:
        a = next((i for i in range(b) if series.ends[i] > since), b)
    if a >= b:
        raise BadInput(f"{source}: no records {_range(since, until)}; its records run from "
                       f"{_clock(series.start(0))} to {_clock(series.ends[-1])}: "
                       "give a --since/--until in that range")
    w = series.window(a, b)
    w.notes = list(series.notes)
    if since is None and a > 0:
        w.notes.append(f"drew the newest records, from {_clock(series.start(a))}; "
                       f"{plural(a, 'earlier interval')} (from {_clock(series.start(0))}, "
                       f"{fmt_span(series.start(a) - series.ends[a - 1])} without records "
                       f"between): --since {_iso(series.start(0))} draws them too")
    return w


def _default_start(series, b):
    """The first interval drawn when no --since is given: back from interval b-1 over
    the gaps that are no longer than everything after them."""
    stretches = [(x, min(y, b)) for x, y in series.stretches() if x < b]
    a = stretches[-1][0]
    for x, _ in reversed(stretches[:-1]):
        gap = series.start(a) - series.ends[a - 1]
        if gap > series.ends[b - 1] - series.start(a):
            break
        a = x
    return a


def _range(since, until):
    if since is None:
        return f"before {_clock(until)}"
    if until is None:
        return f"after {_clock(since)}"
    return f"between {_clock(since)} and {_clock(until)}"


def _clock(t):
    return f"{dt.datetime.fromtimestamp(t):%Y-%m-%d %H:%M:%S}"


def _iso(t):
    return f"{dt.datetime.fromtimestamp(math.floor(t)):%Y-%m-%dT%H:%M:%S}"


def _nothing_to_plot(source, s):
    if os.path.isdir(source) and not list_segments(source):
        return (f"{source}: no segment files (seg-*.msgpack) in this directory; give the "
                "directory `surgewatch run` writes (outputs.segments.dir, default "
                "/var/lib/surgewatch) or a stream file")
    if not s.records:
        return f"{source}: no records in it (empty); nothing to plot yet"
    return (f"{source}: {plural(s.records, 'record')} but no complete interval yet (an "
            "interval ends with its stats record); plot again once the collector has run "
            "for one interval")


# -- shaping -----------------------------------------------------------------------------------
def _bins(series, max_points):
    """[(first index, last index + 1)] merging consecutive intervals into about
    max_points (one more per gap); a bin never spans a gap in the records."""
    n = len(series.ends)
    per = max(1, math.ceil(n / max_points))
    return [(i, min(i + per, b)) for a, b in series.stretches() for i in range(a, b, per)]


def gaps(series):
    """[(start, end)] of the gaps between the stretches of records."""
    st = series.stretches()
    return [(series.ends[b - 1], series.start(c)) for (_, b), (c, _) in zip(st, st[1:])]


def clip_spans(spans, series):
    """Alert spans cut to the stretches of records: nothing shaded in a gap or outside
    the picture; the label on the first piece only."""
    parts = [(series.start(a), series.ends[b - 1]) for a, b in series.stretches()]
    out = []
    for service, start, end, label in spans:
        first = True
        for lo, hi in parts:
            a, b = max(start, lo), min(end, hi)
            if a < b or (a == b and start == end and lo <= a <= hi):
                out.append((service, a, b, label if first else ""))
                first = False
    return out


def lines(series, panel, top=6, max_points=MAX_POINTS):
    """(times, [(name, values)]) of one panel: the `top` services by volume, then the rest
    summed as OTHERS; a point is the mean rate over its merged intervals (time-weighted)."""
    data = series.rates[panel]
    bins = _bins(series, max_points)
    lengths = series.lengths
    times = [series.ends[b - 1] for _, b in bins]

    def volume(points):
        return sum(v * lengths[i] for i, v in points.items())

    ranked = sorted(data, key=lambda name: (-volume(data[name]), name))
    shown, rest = ranked[:top], ranked[top:]

    def binned(points_list):
        out = []
        for a, b in bins:
            dur = sum(lengths[a:b])
            total = sum(pts.get(i, 0.0) * lengths[i] for pts in points_list for i in range(a, b))
            out.append(total / dur)
        return out

    result = [(name, binned([data[name]])) for name in shown]
    if rest:
        result.append((OTHERS, binned([data[name] for name in rest])))
    return times, result


def choose_scale(data, scale="auto"):
    """"log" or "linear" for a panel's [(name, values)]: auto picks log when its largest
    positive value is more than LOG_SCALE_SPAN times its smallest."""
    if scale != "auto":
        return scale
    pos = [v for _, ys in data for v in ys if v > 0]
    return "log" if pos and max(pos) > LOG_SCALE_SPAN * min(pos) else "linear"


def idle_points(series, top=6, columns=IDLE_COLUMNS):
    """[(name, direction, t, idle_ms, resets)]: the sampled resets per time column,
    service, direction and doubling of idle time, at their geometric mean idle time;
    the `top` services by sampled resets, the rest as OTHERS. Each (service, direction)
    has its own place in the column, so a client's and its backend's resets at the same
    idle time stand side by side instead of one on the other."""
    per_service = {}
    for (_, service, _, _), (n, _) in series.idle.items():
        per_service[service] = per_service.get(service, 0) + n
    ranked = sorted(per_service, key=lambda s: (-per_service[s], s))
    shown = set(ranked[:top])
    rank = {name: k for k, name in enumerate(ranked[:top] + [OTHERS])}
    bins = _bins(series, columns)
    column_of = {i: k for k, (a, b) in enumerate(bins) for i in range(a, b)}
    cells = {}
    for (i, service, direction, bucket), (n, lg) in series.idle.items():
        if i not in column_of:
            continue            # a reset record of an interval that never closed
        key = (column_of[i], service if service in shown else OTHERS, direction, bucket)
        cell = cells.setdefault(key, [0, 0.0])
        cell[0] += n
        cell[1] += lg
    groups = sorted({(name, d) for _, name, d, _ in cells}, key=lambda g: (rank[g[0]], g[1]))
    place = {g: (j + 1) / (len(groups) + 1) for j, g in enumerate(groups)}
    out = []
    for (k, name, direction, _), (n, lg) in sorted(cells.items()):
        a, b = bins[k]
        start = series.ends[a] - series.lengths[a]
        t = start + (series.ends[b - 1] - start) * place[(name, direction)]
        out.append((name, direction, t, 2 ** (lg / n), n))
    return out


def _idle_note(series, points):
    n = sum(p[4] for p in points)
    note = f"{plural(n, 'reset')} with an idle time (from reset records)"
    if series.idle_unknown:
        note += f"; {series.idle_unknown} without one (no socket, handshake)"
    if series.resets_unrecorded:
        note += f"; {series.resets_unrecorded} more counted without a record (per-interval cap)"
    return note


def _title(series, source, holes):
    hosts = ", ".join(sorted(series.hosts)) or "?"
    t0 = dt.datetime.fromtimestamp(series.start(0))
    t1 = dt.datetime.fromtimestamp(series.ends[-1])
    end = f"{t1:%H:%M:%S}" if t1.date() == t0.date() else f"{t1:%Y-%m-%d %H:%M:%S}"
    name = escape(os.path.basename(source.rstrip("/")) or source)
    span = fmt_span(series.ends[-1] - series.start(0))
    gaps_note = f", {plural(len(holes), 'gap')} without records" if holes else ""
    return (f"surgewatch: {hosts}  {t0:%Y-%m-%d %H:%M:%S} to {end} ({span}{gaps_note})  "
            f"({name})")


def picture(series, source, top=6, scale="auto"):
    """The Picture of series: the log panel, and with resets in the stream the sent,
    received and idle-before-reset panels."""
    panels = []
    starts = [series.start(a) for a, _ in _bins(series, MAX_POINTS)]
    for panel, label in PANELS:
        if panel == "log" or series.has_resets:
            times, data = lines(series, panel, top)
            panels.append(Panel(label, times, data, clip_spans(series.spans(panel), series),
                                choose_scale(data, scale), starts))
    if series.has_resets:
        points = idle_points(series, top)
        panels.append(IdlePanel(IDLE_LABEL, points, _idle_note(series, points)))
    order = [n for p in panels for n in p.names()]
    holes = gaps(series)
    return Picture(_title(series, source, holes), series.start(0), series.ends[-1], panels,
                   series.alerts, colors(list(dict.fromkeys(order))), holes)


def plot(source, out_path, top=6, scale="auto", since=None, until=None):
    """Write the picture of source (the records from since to until, unix seconds; by
    default the newest stretch) to out_path (.png, .svg or .html); returns the Series
    drawn, with its notes and gaps."""
    picture_type(out_path)                 # refuse a bad name before reading anything
    if scale not in SCALES:
        raise BadInput(f"--scale {scale}: use one of {', '.join(SCALES)}")
    series = select(load(source, since), source, since, until)
    pic = picture(series, source, top, scale)
    write_picture(pic, out_path)
    series.gaps = pic.gaps
    return series


def report(series, out_path):
    """plot's lines on stderr once drawn: the series' notes, then what was drawn where."""
    lines = [f"surgewatch: note: {note}" for note in getattr(series, "notes", ())]
    gaps = len(getattr(series, "gaps", ()))
    gaps = f", {plural(gaps, 'gap')} without records" if gaps else ""
    lines.append(f"surgewatch: {plural(len(series.ends), 'interval')}, "
                 f"{plural(len(series.alerts), 'alert')}{gaps} drawn to {out_path}")
    return lines


def write_picture(pic, out_path):
    """Write pic to out_path (.png, .svg or .html); BadInput when it cannot."""
    if picture_type(out_path) in (".html", ".htm"):
        from collector.views.plotsvg import render_html

        try:
            with open(out_path, "w", encoding="utf-8") as f:
                f.write(render_html(pic))
        except OSError as e:
            raise BadInput(f"{out_path}: cannot write: {e.strerror or e}") from None
    else:
        from collector.views.plotfile import render_matplotlib

        render_matplotlib(pic, out_path)
