"""What both renderers of `surgewatch plot` share: the shaped Picture (collector/commands/
plot.py makes it), colours, which peaks get a label and on which side, round time ticks
for any range (seconds to days), gaps in the records drawn as gaps, and axis limits.
collector/views/plotfile.py draws a Picture with matplotlib (PNG, SVG),
collector/views/plotsvg.py as an HTML page; neither imports the other."""
import datetime as dt
import math
import os
import time
from dataclasses import dataclass, field

from collector.aggregate.logrates import OTHERS
from collector.aggregate.idle_hist import fmt_ms
from collector.errors import BadInput

PICTURE_TYPES = (".png", ".svg", ".html", ".htm")
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f"]
GREY = "#7f7f7f"
ALERT = "#d62728"
GAP_COLOR = "#9a9a9a"
# idle-panel ticks (ms): the units a person thinks of idle timeouts in; 0.5 is "<1ms"
IDLE_TICKS_MS = (0.5, 1, 10, 100, 1000, 2000, 5000, 10_000, 30_000, 60_000, 300_000, 600_000,
                 1_800_000, 3_600_000, 36_000_000)
MARKERS = {"received": "o", "sent": "^"}
DAY = 86400
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
              43200, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 28 * DAY)
CHAR = 0.0072           # a label character's share of the plot width (both renderers)


@dataclass
class Panel:
    """A rate panel: y label, point end times, [(name, values)], [(service, start, end,
    label)] alert spans (label "" on a span's pieces after a gap), its y scale ("linear"
    or "log"), and the point start times (a point's rate holds from its start to its
    end; default: the previous end)."""

    label: str
    times: list
    lines: list
    spans: list
    scale: str = "linear"
    starts: list = None

    def names(self):
        return [n for n, _ in self.lines]

    def bounds(self, first):
        """[(start, end)] of each point; first: the start of the first one."""
        starts = self.starts or [first] + self.times[:-1]
        return list(zip(starts, self.times))


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
    gaps: list = field(default_factory=list)   # [(start, end)]: no records (drawn as gaps)


def picture_type(out_path):
    """The lower-cased extension of out_path, or BadInput when it is no picture type."""
    ext = os.path.splitext(out_path)[1].lower()
    if ext not in PICTURE_TYPES:
        raise BadInput(f"{out_path}: unknown picture type {ext or '(none)'}; "
                       "use FILE.png, FILE.svg or FILE.html")
    return ext


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


# -- gaps ------------------------------------------------------------------------------------
def step_runs(bounds, ys, gaps=(), log=False):
    """The polylines of a step series: [[(t, v)]], each point's rate held from its start
    to its end. A new polyline starts after a gap in the records (nothing is drawn
    across it) and, on a log axis, after a zero (nothing to draw at 0)."""
    runs, pts, prev_end = [], [], None
    for (start, end), v in zip(bounds, ys):
        crossed = prev_end is not None and any(a < start and b > prev_end for a, b in gaps)
        if (log and v <= 0) or crossed:
            if pts:
                runs.append(pts)
            pts = []
        if not (log and v <= 0):
            pts += [(start, v), (end, v)]
        prev_end = end
    if pts:
        runs.append(pts)
    return runs


def fmt_span(seconds):
    """A duration as a person says it: 45 s, 14 min, 3.5 h, 23 h, 2 d."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * DAY:
        return f"{_one_place(seconds / 3600)} h"
    return f"{_one_place(seconds / DAY)} d"


def _one_place(x):
    return f"{x:.1f}".rstrip("0").rstrip(".")


def gap_label(gap):
    return f"no data {fmt_span(gap[1] - gap[0])}"


def label_side(t, lo, hi, gaps=(), chars=20, t_left=None):
    """"right" when a label of `chars` characters written rightwards from time t fits
    before what is right of it (the plot's edge, beyond which the legend is, or a gap),
    else "left" when one written leftwards from t_left (default t: the end of what it
    labels) fits after what is left of it, else the side with more room."""
    t_left = t if t_left is None else t_left
    need = chars * CHAR * (hi - lo)
    right = min([hi] + [a for a, _ in gaps if a >= t])
    left = max([lo] + [b for _, b in gaps if b <= t_left])
    if t + need <= right:
        return "right"
    if t_left - need >= left:
        return "left"
    return "right" if right - t >= t_left - left else "left"


def clear_middle(lo, hi, gaps=()):
    """The middle of the longest stretch with records: where a note such as "none" goes
    (never into a gap)."""
    edges = [lo] + [x for g in sorted(gaps) for x in g] + [hi]
    a, b = max(zip(edges[::2], edges[1::2]), key=lambda ab: ab[1] - ab[0])
    return (a + b) / 2


# -- time axis -------------------------------------------------------------------------------
def time_ticks(t_lo, t_hi, most=8):
    """Unix times of round local times in [t_lo, t_hi], at most `most`, and the strftime
    format their labels need: seconds under a minute apart, the date when the range is
    more than a day."""
    span = max(t_hi - t_lo, 1e-9)
    step = next((s for s in TIME_STEPS if span / s <= most), TIME_STEPS[-1])
    off = time.localtime(t_lo).tm_gmtoff          # align on the local clock
    first = math.ceil((t_lo + off) / step) * step - off
    ticks = []
    t = first
    while t <= t_hi + 1e-6:
        ticks.append(t)
        t += step
    if step >= DAY:
        fmt = "%Y-%m-%d"
    elif span > DAY or _day(t_lo) != _day(t_hi):
        fmt = "%m-%d %H:%M"
    else:
        fmt = "%H:%M:%S" if step < 60 else "%H:%M"
    return ticks, fmt


def _day(t):
    return dt.datetime.fromtimestamp(t).date()


def fmt_time(t, fmt):
    return dt.datetime.fromtimestamp(t).strftime(fmt)


# -- labels and limits -----------------------------------------------------------------------
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
