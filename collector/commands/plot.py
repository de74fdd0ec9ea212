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
from collector.aggregate.signals import (
    LOG_BYTES,
    LOG_WRITES,
    RESETS_RECEIVED,
    RESETS_SENT,
)
from collector.errors import BadInput
from collector.records.intervals import IntervalGrouper
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
PANEL_OF = {LOG_WRITES: "log", LOG_BYTES: "log", RESETS_SENT: "sent",
            RESETS_RECEIVED: "received"}
SHORT = {LOG_WRITES: "log writes", LOG_BYTES: "log bytes", RESETS_SENT: "resets sent",
         RESETS_RECEIVED: "resets received"}
PANELS = (("log", "log writes/s"), ("sent", "TCP resets sent/s"),
          ("received", "TCP resets received/s"))
IDLE_LABEL = "idle before reset"


class Series:
    """Per-interval rates of every service, reset idle times, and alert spans."""

    def __init__(self):
        self.ends = []            # interval end times (unix s)
        self.lengths = []         # interval lengths (s)
        self.rates = {"log": {}, "sent": {}, "received": {}}   # panel -> service -> {i: /s}
        self.has_resets = False
        self.idle = {}            # (i, service, direction, log2 bucket) -> [n, sum log2 ms]
        self.idle_unknown = 0     # reset records without an idle time (no socket, handshake)
        self.resets_unrecorded = 0   # resets counted but without a `reset` record
        self.alerts = []          # [service, panel, start, end or None, signal, ratio or why]
        self.hosts = set()
        self.records = 0
        self._open = {}           # (service, signal) -> index in alerts
        self._grouper = IntervalGrouper(self._interval, self._other)

    def add(self, rec):
        self.records += 1
        self._grouper.add(rec)

    def _other(self, rec):
        kind = rec.get("type")
        if kind == "meta" and isinstance(rec.get("host"), str):
            self.hosts.add(escape(rec["host"]))
        elif kind == "alert":
            self._alert(rec)
        elif kind == "reset":
            self._reset(rec)

    def _interval(self, rates, stats):
        if isinstance(stats.get("host"), str):
            self.hosts.add(escape(stats["host"]))
        ts, length = stats.get("ts"), stats.get("interval")
        if _when(ts) is None or not _finite(length) or length <= 0 \
                or _when(ts - length) is None:
            return
        for k in ("reset_records_suppressed", "resets_events_lost"):
            if _num(stats.get(k)):
                self.resets_unrecorded += int(stats[k])
        i = len(self.ends)
        self.ends.append(float(ts))
        self.lengths.append(float(length))
        for rec in rates:
            name = rec.get("service")
            if not isinstance(name, str):
                continue
            name = escape(name)             # names are drawn: no control characters
            w = rec.get("log_writes_per_s")
            if _finite(w) and w > 0:
                self.rates["log"].setdefault(name, {})[i] = float(w)
            for panel in ("sent", "received"):
                n = rec.get(f"resets_{panel}")
                if n is None:
                    continue
                self.has_resets = True
                if _finite(n) and n > 0:
                    self.rates[panel].setdefault(name, {})[i] = n / length

    def _reset(self, rec):
        service, direction, idle = rec.get("service"), rec.get("direction"), rec.get("idle_ms")
        if not isinstance(service, str) or direction not in ("sent", "received"):
            return
        service = escape(service)
        if not _finite(idle) or idle < 0:
            self.idle_unknown += 1
            return
        lg = math.log2(max(float(idle), 0.5))     # < 1 ms drawn at 0.5 ms
        key = (len(self.ends), service, direction, math.floor(lg))
        cell = self.idle.setdefault(key, [0, 0.0])
        cell[0] += 1
        cell[1] += lg

    def _alert(self, rec):
        service, signal = rec.get("service"), rec.get("signal")
        if not isinstance(service, str) or not isinstance(signal, str) \
                or signal not in PANEL_OF:
            return
        service = escape(service)
        panel, key = PANEL_OF[signal], (service, signal)
        ratio = _ratio(rec)
        started = _time(rec, "started")
        if rec.get("state") == "open" and started is not None:
            self._open[key] = len(self.alerts)
            self.alerts.append([service, panel, started, None, signal, ratio])
        elif rec.get("state") == "close":
            end = _time(rec, "ended")
            if end is None:
                return
            idx = self._open.pop(key, None)
            if idx is None:           # opened before the source starts
                self.alerts.append([service, panel, started if started is not None else end,
                                    end, signal, ratio])
            else:
                a = self.alerts[idx]
                a[3] = end
                a[5] = _larger(a[5], ratio)

    def spans(self, panel):
        """[(service, start, end, label)] of one panel; open alerts end with the data.
        Overlapping alerts of one service (log writes and bytes) are one span whose
        label names each signal with its largest ratio to the baseline."""
        last = self.ends[-1] if self.ends else None
        raw = sorted(((a[0], a[2], a[3] if a[3] is not None else last, a[4], a[5])
                      for a in self.alerts if a[1] == panel), key=lambda a: a[:2])
        out = []
        for service, start, end, signal, ratio in raw:
            if end is None:
                continue
            end = max(end, start)           # a close stamped before its start: a line
            what = (signal, ratio)
            if out and out[-1][0] == service and start <= out[-1][2]:
                out[-1][2] = max(end, out[-1][2])
                out[-1][3].append(what)
            else:
                out.append([service, start, end, [what]])
        return [(s, a, b, _span_label(s, whats)) for s, a, b, whats in out]


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v, most=1e15):
    """A finite number below `most`: larger rates (or idle times) are no measurement."""
    return _num(v) and math.isfinite(v) and abs(v) < most


def _when(v):
    """v when it is a unix time a date can be made of (0 to year 5000), else None."""
    return float(v) if _finite(v) and 0 <= v < 95e9 else None


def _time(rec, field):
    """rec[field] (else its ts) as unix seconds, or None when neither is a usable time."""
    t = _when(rec.get(field))
    return t if t is not None else _when(rec.get("ts"))


def _ratio(rec):
    """The alert's largest ratio to its baseline (the peak's, known on close), or why
    there is none: "new service" (no baseline yet) or "from 0/s" (a baseline of 0)."""
    base, ratio = rec.get("baseline"), rec.get("ratio")
    if rec.get("reason") == "new_service":     # its baseline is its own first intervals
        return "new service"
    if _num(base) and base > 0 and _num(rec.get("peak")):
        return max(float(rec["peak"]) / base, float(ratio) if _num(ratio) else 0.0)
    if _num(ratio):
        return float(ratio)
    return "from 0/s" if _num(base) else "new service"


def _fmt_ratio(r):
    if isinstance(r, str):
        return r
    return f"{r:.0f}x" if r >= 10 else f"{r:.1f}x"


def _larger(a, b):
    """The larger of two alert ratios; a number beats a reason."""
    if isinstance(a, str):
        return b
    return a if isinstance(b, str) else max(a, b)


def _span_label(service, whats):
    best = {}
    for signal, ratio in whats:
        best[signal] = _larger(best[signal], ratio) if signal in best else ratio
    parts = [f"{SHORT[s]} {_fmt_ratio(r)}" for s, r in sorted(best.items())]
    return f"alert {service}: {', '.join(parts)}"


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
