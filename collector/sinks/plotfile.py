"""Picture files of `surgewatch plot`: PNG and SVG drawn with matplotlib (the `plot` extra),
HTML as a self-contained page with an inline SVG (collector/sinks/plotsvg.py: no
JavaScript, no matplotlib).

A Picture is already shaped (collector/commands/plot.py): per rate panel the binned lines
of the top services plus OTHERS, its axis scale and its labelled alert spans; the idle
panel's points. This module holds those types, what both renderers share (colours, peak
labels, ticks) and the matplotlib renderer.
"""
import datetime as dt
import math
import os
from dataclasses import dataclass

from collector.aggregate.logrates import OTHERS
from collector.aggregate.resets import fmt_ms
from collector.errors import BadInput

PICTURE_TYPES = (".png", ".svg", ".html", ".htm")
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f"]
GREY = "#7f7f7f"
ALERT = "#d62728"
# idle-panel ticks (ms): the units a person thinks of idle timeouts in; 0.5 is "<1ms"
IDLE_TICKS_MS = (0.5, 1, 10, 100, 1000, 2000, 5000, 10_000, 30_000, 60_000, 300_000, 600_000,
                 1_800_000, 3_600_000, 36_000_000)
MARKERS = {"received": "o", "sent": "^"}


@dataclass
class Panel:
    """A rate panel: y label, point times, [(name, values)], [(service, start, end,
    label)] alert spans, and its y scale ("linear" or "log")."""

    label: str
    times: list
    lines: list
    spans: list
    scale: str = "linear"

    def names(self):
        return [n for n, _ in self.lines]


@dataclass
class IdlePanel:
    """Idle time before reset: [(name, direction, t, idle_ms, resets)] and a note on
    what the points are drawn from."""

    label: str
    points: list
    note: str

    def names(self):
        return list(dict.fromkeys(p[0] for p in self.points))


@dataclass
class Picture:
    title: str
    start: float          # unix s: the first interval's start
    end: float            # unix s: the last interval's end
    panels: list          # [Panel | IdlePanel], top to bottom
    alerts: list          # [service, panel, start, end or None, signal, ratio or why not]
    colors: dict          # service -> colour, the same in every panel


def picture_type(out_path):
    """The lower-cased extension of out_path, or BadInput when it is no picture type."""
    ext = os.path.splitext(out_path)[1].lower()
    if ext not in PICTURE_TYPES:
        raise BadInput(f"{out_path}: unknown picture type {ext or '(none)'}; "
                       "use FILE.png, FILE.svg or FILE.html")
    return ext


def write_picture(picture, out_path):
    """Write picture to out_path (.png, .svg or .html); BadInput when it cannot."""
    if picture_type(out_path) in (".html", ".htm"):
        from collector.sinks.plotsvg import render_html

        try:
            with open(out_path, "w", encoding="utf-8") as f:
                f.write(render_html(picture))
        except OSError as e:
            raise BadInput(f"{out_path}: cannot write: {e.strerror or e}") from None
    else:
        render_matplotlib(picture, out_path)


def colors(names):
    """One colour per service, in order of first appearance; (others) grey."""
    out, k = {}, 0
    for name in names:
        if name in out:
            continue
        if name == OTHERS:
            out[name] = GREY
        else:
            out[name] = PALETTE[k % (len(PALETTE) - 1)]
            k += 1
    return out


def peak_labels(data, panel_peak, most=4, log=False):
    """[(name, index, value)]: the peaks worth a label: at least 5% of the panel's peak
    (any on a log axis), the highest first, at most `most`, none too close to a label
    already placed (within 8% of the width and 8% of the height), never (others)."""
    def height(v):
        return math.log10(v) if log else v

    cand = []
    for name, ys in data:
        if name == OTHERS or not ys:
            continue
        k = max(range(len(ys)), key=ys.__getitem__)
        if ys[k] > 0 and (log or ys[k] >= 0.05 * panel_peak):
            cand.append((name, k, ys[k]))
    cand.sort(key=lambda c: -c[2])
    n = max((len(ys) for _, ys in data), default=1)
    lo = min((height(c[2]) for c in cand), default=0.0) if log else 0.0
    tall = max(height(panel_peak) - lo, 1e-9) if panel_peak > 0 else 1.0
    out = []
    for name, k, v in cand:
        if len(out) == most:
            break
        if any(abs(k - k2) < 0.08 * n and abs(height(v) - height(v2)) < 0.08 * tall
               for _, k2, v2 in out):
            continue
        out.append((name, k, v))
    return out


def coinciding(data, share=0.5):
    """Names of the lines that would hide under an earlier one: equal to it at more than
    `share` of their non-zero points (a client's resets received and its backend's,
    one per connection). They are drawn dashed, so both show."""
    out = set()
    for k, (name, ys) in enumerate(data):
        pos = [i for i, v in enumerate(ys) if v > 0]
        if not pos:
            continue
        for _, earlier in data[:k]:
            same = sum(1 for i in pos if i < len(earlier) and earlier[i] == ys[i])
            if same > share * len(pos):
                out.add(name)
                break
    return out


def fmt_rate(v):
    if v >= 1e6:
        return f"{v / 1e6:.3g}M"
    if v >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def peak(data):
    return max((max(ys) for _, ys in data if ys), default=0.0)


def positive_range(data):
    """(smallest, largest) positive value of [(name, values)], or None."""
    pos = [v for _, ys in data for v in ys if v > 0]
    return (min(pos), max(pos)) if pos else None


def log_limits(data):
    """(bottom, top) of a log axis: whole decades around the positive values, with
    room above for the alert labels."""
    lo, hi = positive_range(data) or (1.0, 10.0)
    bottom = 10.0 ** math.floor(math.log10(lo * 0.7))    # a line at a decade stays visible
    top = 10.0 ** min(math.ceil(math.log10(hi) + math.log10(3)), 300)
    return bottom, max(top, bottom * 10)


def idle_limits(points):
    """(bottom, top) in ms of the idle axis: the idle-tick values around the points."""
    ys = [p[3] for p in points] or [1.0, 1000.0]
    lo = max([t for t in IDLE_TICKS_MS if t <= min(ys)] or [0.5]) / 2
    hi = min([t for t in IDLE_TICKS_MS if t >= max(ys) * 2] or [IDLE_TICKS_MS[-1]])
    return lo, max(hi, lo * 20)


def fmt_idle(ms):
    return "<1ms" if ms < 1 else fmt_ms(ms)


def marker_area(n, most):
    """Marker area (points^2) of a cell of n resets; the fullest cell is 90."""
    return 8 + 82 * math.sqrt(n / most) if most else 8


# -- matplotlib: PNG, SVG ----------------------------------------------------------------------
def render_matplotlib(picture, out_path):
    try:
        import matplotlib  # lazy: an optional extra, and slow to import
    except ImportError:
        raise BadInput("PNG and SVG need matplotlib: pip install 'surgewatch[plot]' "
                       "(or write FILE.html, which needs nothing)") from None
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    panels = picture.panels
    fig, axes = plt.subplots(len(panels), 1, sharex=True, squeeze=False,
                             figsize=(13, 2.9 * len(panels) + 0.7))
    axes = [a[0] for a in axes]
    fig.suptitle(picture.title, fontsize=10, x=0.01, ha="left")
    for ax, panel in zip(axes, panels):
        if isinstance(panel, IdlePanel):
            _mpl_idle(ax, panel, picture.colors)
        else:
            _mpl_rates(ax, panel, picture.colors, picture.start)
        ax.grid(True, alpha=0.3)
        ax.set_xlim(dt.datetime.fromtimestamp(picture.start),
                    dt.datetime.fromtimestamp(picture.end))
    axes[-1].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    axes[-1].set_xlabel("local time")
    fig.tight_layout()
    try:
        fig.savefig(out_path, dpi=110)
    except OSError as e:
        raise BadInput(f"{out_path}: cannot write: {e.strerror or e}") from None
    finally:
        plt.close(fig)


def _mpl_rates(ax, panel, cmap, start):
    data, log = panel.lines, panel.scale == "log"
    xs = [dt.datetime.fromtimestamp(t) for t in panel.times]
    first = [dt.datetime.fromtimestamp(start)]     # steps-pre: the first interval's start
    top = peak(data)
    dashed = coinciding(data)
    for name, ys in data:
        if log:                            # nothing to draw at 0 on a log axis: a gap
            ys = [v if v > 0 else math.nan for v in ys]
        ax.plot(first + xs, ys[:1] + ys, color=cmap[name], lw=1.4 if name != OTHERS else 1.0,
                ls=(0, (4, 3)) if name in dashed else "-", label=name, drawstyle="steps-pre")
    for name, k, v in peak_labels(data, top, log=log):
        ax.annotate(f"{name} peak {fmt_rate(v)}/s", (xs[k], v), xytext=(4, 4),
                    textcoords="offset points", fontsize=8, color=cmap[name])
    for n, (service, start, end, label) in enumerate(panel.spans):
        c = cmap.get(service, ALERT)
        ax.axvspan(dt.datetime.fromtimestamp(start), dt.datetime.fromtimestamp(end),
                   color=c, alpha=0.15, lw=0)
        ax.text(dt.datetime.fromtimestamp(start), 0.98 - 0.09 * (n % 3), f" {label}",
                transform=ax.get_xaxis_transform(), va="top", fontsize=7.5, color=c)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(*log_limits(data))
    else:
        ax.set_ylim(0, max(top, 1.0) * 1.3)      # room for the alert labels on top
    ax.set_ylabel(panel.label + (" (log)" if log else ""))
    if data:
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "none", transform=ax.transAxes, ha="center", color="#888")


def _mpl_idle(ax, panel, cmap):
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    pts = panel.points
    most = max((p[4] for p in pts), default=0)
    groups = {}
    for p in pts:
        groups.setdefault((p[0], p[1]), []).append(p)
    for (name, direction), ps in groups.items():
        c = cmap.get(name, GREY)
        filled = direction == "received"
        ax.scatter([dt.datetime.fromtimestamp(p[2]) for p in ps], [p[3] for p in ps],
                   s=[marker_area(p[4], most) for p in ps], marker=MARKERS[direction],
                   facecolors=c if filled else "none", edgecolors=c, alpha=0.75,
                   linewidths=1.0, label=f"{name} ({direction})")
    ax.set_yscale("log")
    ax.set_ylim(*idle_limits(pts))
    ax.yaxis.set_major_locator(FixedLocator(IDLE_TICKS_MS))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt_idle(v)))
    ax.set_ylabel(panel.label)
    ax.set_title(panel.note + "; marker area: resets", loc="right", fontsize=8,
                 color="#555")
    if pts:
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False,
                  markerscale=0.7)
    else:
        ax.text(0.5, 0.5, "no reset records with an idle time", transform=ax.transAxes,
                ha="center", color="#888")
