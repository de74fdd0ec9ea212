"""`surgewatch plot SOURCE -o FILE.png|FILE.svg|FILE.html`: rates over time.

Two panels sharing the time axis: log writes/s and TCP resets/s (sent + received) per
service, the top services drawn and labelled, the rest summed as "(others)", alert
spans (from `alert` records) shaded on the panel of their signal. PNG and SVG are drawn
with matplotlib (the `plot` extra); HTML is a self-contained page with an inline SVG
drawn here, no JavaScript and no matplotlib.
"""
import datetime as dt
import html
import math
import os

from collector.errors import BadInput
from collector.records.intervals import IntervalGrouper
from collector.records.source import notes_only, open_records

OTHERS = "(others)"
MAX_POINTS = 1500          # intervals are merged into at most this many points
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f"]
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


def colors(names):
    return {name: ("#7f7f7f" if name == OTHERS else PALETTE[i % (len(PALETTE) - 1)])
            for i, name in enumerate(names)}


def _title(series, source):
    hosts = ", ".join(sorted(series.hosts)) or "?"
    t0 = dt.datetime.fromtimestamp(series.ends[0] - series.lengths[0])
    t1 = dt.datetime.fromtimestamp(series.ends[-1])
    return f"surgewatch: {hosts}  {t0:%Y-%m-%d %H:%M:%S} to {t1:%H:%M:%S}  ({os.path.basename(source.rstrip('/')) or source})"


# -- matplotlib: PNG, SVG ----------------------------------------------------------------------
def render_matplotlib(series, out_path, source, top=6):
    try:
        import matplotlib
    except ImportError:
        raise BadInput("PNG and SVG need matplotlib: pip install 'surgewatch[plot]' "
                       "(or write FILE.html, which needs nothing)") from None
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    panels = [p for p in PANELS if p[0] == "log" or series.has_resets]
    fig, axes = plt.subplots(len(panels), 1, sharex=True, squeeze=False,
                             figsize=(13, 3.6 * len(panels) + 0.6))
    axes = [a[0] for a in axes]
    fig.suptitle(_title(series, source), fontsize=10, x=0.01, ha="left")
    for ax, (panel, label) in zip(axes, panels):
        times, data = lines(series, panel, top)
        xs = [dt.datetime.fromtimestamp(t) for t in times]
        cmap = colors([n for n, _ in data])
        peak = max((max(ys) for _, ys in data if ys), default=0.0)
        for name, ys in data:
            ax.plot(xs, ys, color=cmap[name], lw=1.4 if name != OTHERS else 1.0,
                    label=name, drawstyle="steps-pre")
        for name, k, v in peak_labels(data, peak):
            ax.annotate(f"{name} peak {_fmt(v)}/s", (xs[k], v), xytext=(4, 4),
                        textcoords="offset points", fontsize=8, color=cmap[name])
        for service, start, end in series.spans(panel):
            c = cmap.get(service, "#d62728")
            ax.axvspan(dt.datetime.fromtimestamp(start), dt.datetime.fromtimestamp(end),
                       color=c, alpha=0.15, lw=0)
            ax.text(dt.datetime.fromtimestamp(start), 1.0, f" alert: {service}",
                    transform=ax.get_xaxis_transform(), va="top", fontsize=7, color=c)
        ax.set_ylabel(label)
        ax.set_ylim(0, max(peak, 1.0) * 1.2)          # room for the alert labels on top
        ax.grid(True, alpha=0.3)
        if data:
            ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8,
                      frameon=False)
        else:
            ax.text(0.5, 0.5, "none", transform=ax.transAxes, ha="center", color="#888")
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    axes[-1].set_xlabel("local time")
    fig.tight_layout()
    try:
        fig.savefig(out_path, dpi=110)
    except OSError as e:
        raise BadInput(f"{out_path}: cannot write: {e.strerror or e}") from None
    finally:
        plt.close(fig)


# -- HTML with an inline SVG (no matplotlib, no JavaScript) -----------------------------------
def peak_labels(data, panel_peak, most=4):
    """[(name, index, value)]: the peaks worth a label: at least 5% of the panel's peak,
    the highest first, at most `most`, none too close to a label already placed (within
    8% of the width and 8% of the height), never (others)."""
    cand = []
    for name, ys in data:
        if name == OTHERS or not ys:
            continue
        k = max(range(len(ys)), key=ys.__getitem__)
        if ys[k] > 0 and ys[k] >= 0.05 * panel_peak:
            cand.append((name, k, ys[k]))
    cand.sort(key=lambda c: -c[2])
    n = max((len(ys) for _, ys in data), default=1)
    out = []
    for name, k, v in cand:
        if len(out) == most:
            break
        if any(abs(k - k2) < 0.08 * n and abs(v - v2) < 0.08 * panel_peak
               for _, k2, v2 in out):
            continue
        out.append((name, k, v))
    return out


def _nice_max(v):
    if v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= v:
            return m * exp
    return 10 * exp


def _fmt(v):
    if v >= 1e6:
        return f"{v / 1e6:.3g}M"
    if v >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def svg_panel(series, panel, label, top, x0, y0, width, height, t_lo, t_hi):
    """SVG elements of one panel in the box (x0, y0, width, height)."""
    esc = html.escape
    times, data = lines(series, panel, top)
    peak = max((max(ys) for _, ys in data if ys), default=0.0)
    ymax = _nice_max(peak * 1.15)
    span = max(t_hi - t_lo, 1e-9)

    def X(t):
        return x0 + (t - t_lo) / span * width

    def Y(v):
        return y0 + height - v / ymax * height

    out = [f'<rect x="{x0}" y="{y0}" width="{width}" height="{height}" fill="#fff" '
           f'stroke="#bbb"/>']
    cmap = colors([n for n, _ in data])
    for service, start, end in series.spans(panel):
        c = cmap.get(service, "#d62728")
        xa, xb = X(max(start, t_lo)), X(min(end, t_hi))
        out.append(f'<rect x="{xa:.1f}" y="{y0}" width="{max(xb - xa, 1):.1f}" '
                   f'height="{height}" fill="{c}" fill-opacity="0.15">'
                   f'<title>alert: {esc(service)}</title></rect>')
        out.append(f'<text x="{xa + 2:.1f}" y="{y0 + 10}" font-size="9" fill="{c}">'
                   f'alert: {esc(service)}</text>')
    for k in range(5):
        v = ymax * k / 4
        y = Y(v)
        out.append(f'<line x1="{x0}" x2="{x0 + width}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#eee"/>')
        out.append(f'<text x="{x0 - 4}" y="{y + 3:.1f}" font-size="10" text-anchor="end">'
                   f'{_fmt(v)}</text>')
    out.append(f'<text x="{x0 - 44}" y="{y0 + height / 2}" font-size="11" '
               f'transform="rotate(-90 {x0 - 44} {y0 + height / 2})" text-anchor="middle">'
               f'{esc(label)}</text>')
    for name, ys in data:
        pts = []
        prev_t = t_lo
        for t, v in zip(times, ys):           # steps: the rate holds over its interval
            pts.append(f"{X(prev_t):.1f},{Y(v):.1f}")
            pts.append(f"{X(t):.1f},{Y(v):.1f}")
            prev_t = t
        width_px = 1.0 if name == OTHERS else 1.6
        out.append(f'<polyline fill="none" stroke="{cmap[name]}" stroke-width="{width_px}" '
                   f'points="{" ".join(pts)}"><title>{esc(name)}</title></polyline>')
    for name, k, v in peak_labels(data, peak):
        out.append(f'<text x="{min(X(times[k]) + 3, x0 + width - 170):.1f}" '
                   f'y="{max(Y(v) - 3, y0 + 22):.1f}" font-size="10" '
                   f'fill="{cmap[name]}">{esc(name)} peak {_fmt(v)}/s</text>')
    # legend
    for j, (name, _) in enumerate(data):
        ly = y0 + 16 + 14 * j
        out.append(f'<rect x="{x0 + 8}" y="{ly - 8}" width="10" height="3" '
                   f'fill="{cmap[name]}"/><text x="{x0 + 22}" y="{ly - 3}" font-size="10">'
                   f'{esc(name)}</text>')
    if not data:
        out.append(f'<text x="{x0 + width / 2}" y="{y0 + height / 2}" fill="#888" '
                   f'text-anchor="middle">none</text>')
    return out


def render_svg(series, source, top=6, width=1100):
    panels = [p for p in PANELS if p[0] == "log" or series.has_resets]
    ph, left, right, top_m, gap = 260, 70, 20, 30, 40
    height = top_m + len(panels) * (ph + gap) + 10
    t_lo = series.ends[0] - series.lengths[0]
    t_hi = series.ends[-1]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
           f'<text x="8" y="18" font-size="12">{html.escape(_title(series, source))}</text>']
    for n, (panel, label) in enumerate(panels):
        y0 = top_m + n * (ph + gap)
        out += svg_panel(series, panel, label, top, left, y0, width - left - right, ph,
                         t_lo, t_hi)
        for k in range(7):                   # time ticks
            t = t_lo + (t_hi - t_lo) * k / 6
            x = left + (width - left - right) * k / 6
            out.append(f'<text x="{x:.1f}" y="{y0 + ph + 14}" font-size="10" '
                       f'text-anchor="middle">'
                       f'{dt.datetime.fromtimestamp(t):%H:%M:%S}</text>')
    out.append("</svg>")
    return "\n".join(out)


def render_html(series, source, top=6):
    esc = html.escape
    rows = []
    for service, panel, start, end, signal in series.alerts:
        rows.append(f"<tr><td>{esc(service)}</td><td>{esc(signal)}</td>"
                    f"<td>{dt.datetime.fromtimestamp(start):%Y-%m-%d %H:%M:%S}</td>"
                    f"<td>{'open' if end is None else f'{end - start:.0f} s'}</td></tr>")
    table = ("<table><tr><th>service</th><th>signal</th><th>started</th><th>duration</th>"
             "</tr>" + "".join(rows) + "</table>") if rows else "<p>No alerts.</p>"
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{esc(_title(series, source))}</title>"
            "<style>body{font-family:sans-serif;margin:16px}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}</style></head><body>\n"
            + render_svg(series, source, top) + "\n<h3>Alerts</h3>\n" + table
            + "\n</body></html>\n")


def plot(source, out_path, top=6):
    """Write the picture of source to out_path (.png, .svg or .html)."""
    ext = os.path.splitext(out_path)[1].lower()
    if ext not in (".png", ".svg", ".html", ".htm"):
        raise BadInput(f"{out_path}: unknown picture type {ext or '(none)'}; "
                       "use FILE.png, FILE.svg or FILE.html")
    series = load(source)
    if ext in (".html", ".htm"):
        try:
            with open(out_path, "w", encoding="utf-8") as f:
                f.write(render_html(series, source, top))
        except OSError as e:
            raise BadInput(f"{out_path}: cannot write: {e.strerror or e}") from None
    else:
        render_matplotlib(series, out_path, source, top)
    return series
