"""`surgewatch plot SOURCE -o FILE.png|FILE.svg|FILE.html`: rates over time.

Two panels sharing the time axis: log writes/s and TCP resets/s (sent + received) per
service, the top services drawn and labelled, the rest summed as "(others)", alert
spans (from `alert` records) shaded on the panel of their signal. This module loads and
shapes; collector/sinks/plotfile.py draws and writes the picture.
"""
import datetime as dt
import math
import os

from collector.aggregate.logrates import OTHERS
from collector.errors import BadInput
from collector.records.intervals import IntervalGrouper
from collector.records.source import notes_only, open_records
from collector.sinks.plotfile import Panel, Picture, picture_type, write_picture

MAX_POINTS = 1500          # intervals are merged into at most this many points
LOG_SIGNALS = ("log_writes_per_s", "log_bytes_per_s")
PANELS = (("log", "log writes/s"), ("resets", "TCP resets/s (sent + received)"))


class Series:
    """Per-interval rates of every service, and the alert spans, from one stream."""

    def __init__(self):
        self.ends = []            # interval end times (unix s)
        self.lengths = []         # interval lengths (s)
        self.log = {}             # service -> {interval index: writes/s}
        self.resets = {}          # service -> {interval index: resets/s}
        self.has_resets = False
        self.alerts = []          # [service, panel, start, end or None, signal]
        self.hosts = set()
        self._open = {}           # (service, signal) -> index in alerts
        self._grouper = IntervalGrouper(self._interval, self._other)

    def add(self, rec):
        self._grouper.add(rec)

    def _other(self, rec):
        if rec.get("type") == "meta" and isinstance(rec.get("host"), str):
            self.hosts.add(rec["host"])
        elif rec.get("type") == "alert":
            self._alert(rec)

    def _interval(self, rates, stats):
        if isinstance(stats.get("host"), str):
            self.hosts.add(stats["host"])
        ts, length = stats.get("ts"), stats.get("interval")
        if not isinstance(ts, (int, float)) or not isinstance(length, (int, float)) \
                or length <= 0:
            return
        i = len(self.ends)
        self.ends.append(float(ts))
        self.lengths.append(float(length))
        for rec in rates:
            name = rec.get("service")
            if not isinstance(name, str):
                continue
            w = rec.get("log_writes_per_s")
            if isinstance(w, (int, float)) and w > 0:
                self.log.setdefault(name, {})[i] = float(w)
            if "resets_sent" in rec or "resets_received" in rec:
                self.has_resets = True
                n = (rec.get("resets_sent") or 0) + (rec.get("resets_received") or 0)
                if n > 0:
                    self.resets.setdefault(name, {})[i] = n / length

    def _alert(self, rec):
        service, signal = rec.get("service"), rec.get("signal")
        if not isinstance(service, str) or not isinstance(signal, str):
            return
        panel = "log" if signal in LOG_SIGNALS else "resets"
        key = (service, signal)
        if rec.get("state") == "open":
            started = rec.get("started", rec.get("ts"))
            self._open[key] = len(self.alerts)
            self.alerts.append([service, panel, float(started), None, signal])
        elif rec.get("state") == "close":
            idx = self._open.pop(key, None)
            end = float(rec.get("ended", rec.get("ts")))
            if idx is None:           # opened before the source starts
                start = rec.get("started")
                self.alerts.append([service, panel, float(start) if start else end, end,
                                    signal])
            else:
                self.alerts[idx][3] = end

    def spans(self, panel):
        """[(service, start, end)] of one panel; open alerts end with the data. Alerts of
        two signals of the same service that overlap are merged."""
        last = self.ends[-1] if self.ends else None
        raw = sorted((a[0], a[2], a[3] if a[3] is not None else last)
                     for a in self.alerts if a[1] == panel)
        out = []
        for service, start, end in raw:
            if end is None:
                continue
            if out and out[-1][0] == service and start <= out[-1][2]:
                out[-1] = (service, out[-1][1], max(end, out[-1][2]))
            else:
                out.append((service, start, end))
        return out


def load(source):
    """Series from a segment directory or a stream file; BadInput when unreadable."""
    notes = []
    s = Series()
    for rec in open_records(source, notes_only(notes.append)):
        s.add(rec)
    if not s.ends:
        raise BadInput(f"{source}: no complete interval to plot (no stats record)")
    s.notes = notes
    return s


# -- shaping -----------------------------------------------------------------------------------
def _bins(series, max_points):
    """[(first index, last index + 1)] merging consecutive intervals into <= max_points."""
    n = len(series.ends)
    per = max(1, math.ceil(n / max_points))
    return [(i, min(i + per, n)) for i in range(0, n, per)]


def lines(series, panel, top=6, max_points=MAX_POINTS):
    """(times, [(name, values)]) of one panel: the `top` services by volume, then the rest
    summed as OTHERS; a point is the mean rate over its merged intervals (time-weighted)."""
    data = series.log if panel == "log" else series.resets
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


def _title(series, source):
    hosts = ", ".join(sorted(series.hosts)) or "?"
    t0 = dt.datetime.fromtimestamp(series.ends[0] - series.lengths[0])
    t1 = dt.datetime.fromtimestamp(series.ends[-1])
    name = os.path.basename(source.rstrip("/")) or source
    return f"surgewatch: {hosts}  {t0:%Y-%m-%d %H:%M:%S} to {t1:%H:%M:%S}  ({name})"


def picture(series, source, top=6):
    """The Picture of series: the log panel, and the resets panel when the stream has resets."""
    panels = []
    for panel, label in PANELS:
        if panel == "log" or series.has_resets:
            times, data = lines(series, panel, top)
            panels.append(Panel(label, times, data, series.spans(panel)))
    return Picture(_title(series, source), series.ends[0] - series.lengths[0],
                   series.ends[-1], panels, series.alerts)


def plot(source, out_path, top=6):
    """Write the picture of source to out_path (.png, .svg or .html)."""
    picture_type(out_path)                 # refuse a bad name before reading anything
    series = load(source)
    write_picture(picture(series, source, top), out_path)
    return series
