"""`surgewatch plot SOURCE -o FILE.png|FILE.svg|FILE.html`: rates over time.

Panels sharing the time axis: log writes/s, TCP resets sent/s and received/s (separate,
so a client's received resets never hide under its server's sent ones), and the idle
time before each reset (from `reset` records), where a load balancer's idle timeout is a
row of resets at one height. The top services are drawn and named, the rest summed as
"(others)"; alert spans are shaded on the panel of their signal and labelled with the
signal and ratio. This module loads and shapes; collector/sinks/plotfile.py draws.
"""
import datetime as dt
import math
import os

from collector.aggregate.logrates import OTHERS
from collector.commands.plot_series import Series
from collector.errors import BadInput
from collector.records.segments import list_segments
from collector.records.source import notes_only, open_records
from collector.sinks.plotfile import (
    IdlePanel,
    Panel,
    Picture,
    colors,
    picture_type,
    write_picture,
)
from collector.sinks.text import escape, plural

MAX_POINTS = 1500          # intervals are merged into at most this many points
IDLE_COLUMNS = 150         # time columns of the idle panel
LOG_SCALE_SPAN = 100.0     # auto: a log axis when the panel's max / min exceeds this
SCALES = ("auto", "linear", "log")
PANELS = (("log", "log writes/s"), ("sent", "TCP resets sent/s"),
          ("received", "TCP resets received/s"))
IDLE_LABEL = "idle before reset"


def load(source):
    """Series from a segment directory or a stream file; BadInput when there is nothing
    to plot, saying what the source holds."""
    notes = []
    s = Series()
    for rec in open_records(source, notes_only(notes.append)):
        s.add(rec)
    if not s.ends:
        raise BadInput(_nothing_to_plot(str(source), s))
    s.notes = notes
    return s


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
    """[(first index, last index + 1)] merging consecutive intervals into <= max_points."""
    n = len(series.ends)
    per = max(1, math.ceil(n / max_points))
    return [(i, min(i + per, n)) for i in range(0, n, per)]


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


def _title(series, source):
    hosts = ", ".join(sorted(series.hosts)) or "?"
    t0 = dt.datetime.fromtimestamp(series.ends[0] - series.lengths[0])
    t1 = dt.datetime.fromtimestamp(series.ends[-1])
    name = escape(os.path.basename(source.rstrip("/")) or source)
    return f"surgewatch: {hosts}  {t0:%Y-%m-%d %H:%M:%S} to {t1:%H:%M:%S}  ({name})"


def picture(series, source, top=6, scale="auto"):
    """The Picture of series: the log panel, and with resets in the stream the sent,
    received and idle-before-reset panels."""
    panels = []
    for panel, label in PANELS:
        if panel == "log" or series.has_resets:
            times, data = lines(series, panel, top)
            panels.append(Panel(label, times, data, series.spans(panel),
                                choose_scale(data, scale)))
    if series.has_resets:
        points = idle_points(series, top)
        panels.append(IdlePanel(IDLE_LABEL, points, _idle_note(series, points)))
    order = [n for p in panels for n in p.names()]
    return Picture(_title(series, source), series.ends[0] - series.lengths[0],
                   series.ends[-1], panels, series.alerts,
                   colors(list(dict.fromkeys(order))))


def plot(source, out_path, top=6, scale="auto"):
    """Write the picture of source to out_path (.png, .svg or .html)."""
    picture_type(out_path)                 # refuse a bad name before reading anything
    if scale not in SCALES:
        raise BadInput(f"--scale {scale}: use one of {', '.join(SCALES)}")
    series = load(source)
    write_picture(picture(series, source, top, scale), out_path)
    return series
