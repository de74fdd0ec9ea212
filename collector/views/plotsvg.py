"""`surgewatch plot -o FILE.html`: one self-contained page, the Picture drawn as an inline
SVG here (no matplotlib, no JavaScript), and a table of the alerts.

Each panel has its legend in a column right of the plot area (never over the data),
y ticks at round values (1, 2, 2.5, 5 x 10^k; decades on a log axis), and time ticks at
round local times with tick marks, every label inside the picture. A gap in the records
is a hatched band ("no data 14 min") that no line crosses: a polyline ends before it."""
import datetime as dt
import html
import math

from collector.aggregate.logrates import OTHERS
from collector.views.picture import (
    ALERT,
    GAP_COLOR,
    GREY,
    IDLE_TICKS_MS,
    IdlePanel,
    clear_middle,
    coinciding,
    fmt_idle,
    fmt_rate,
    fmt_time,
    gap_label,
    idle_limits,
    label_side,
    log_limits,
    peak,
    peak_labels,
    step_runs,
    time_ticks,
)

WIDTH, LEFT, LEGEND, RIGHT = 1100, 74, 210, 8
PANEL_H, TOP, GAP = 220, 34, 52
LEGEND_CHARS = 28
esc = html.escape
HATCH = ('<defs><pattern id="nodata" width="6" height="6" patternUnits="userSpaceOnUse" '
         'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#d4d4d4" '
         'stroke-width="2"/></pattern></defs>')


def linear_ticks(top_value, n=6):
    """(axis top, tick values): at most n steps of 1, 2, 2.5 or 5 x 10^k from 0, the
    axis top the first tick at or above top_value."""
    raw = max(top_value, 1e-9) / n
    exp = 10 ** math.floor(math.log10(raw))
    step = next(m * exp for m in (1, 2, 2.5, 5, 10) if m * exp >= raw)
    top = math.ceil(top_value / step - 1e-9) * step
    return top, [step * k for k in range(round(top / step) + 1)]


def decade_ticks(bottom, top):
    k0, k1 = round(math.log10(bottom)), round(math.log10(top))
    return [10.0 ** k for k in range(k0, k1 + 1)]


class _Box:
    """A panel's plot area and its axes: time -> x, value -> y (linear or log)."""

    def __init__(self, x0, y0, w, h, t_lo, t_hi, v_lo, v_hi, log):
        self.x0, self.y0, self.w, self.h = x0, y0, w, h
        self.t_lo, self.t_hi, self.span = t_lo, t_hi, max(t_hi - t_lo, 1e-9)
        self.log = log
        self.lo, self.hi = (math.log10(v_lo), math.log10(v_hi)) if log else (v_lo, v_hi)

    def x(self, t):
        return self.x0 + (t - self.t_lo) / self.span * self.w

    def y(self, v):
        v = math.log10(v) if self.log else v
        return self.y0 + self.h - (v - self.lo) / max(self.hi - self.lo, 1e-9) * self.h


def _y_axis(box, ticks, fmt, label):
    out = []
    for v in ticks:
        y = box.y(v)
        out.append(f'<line x1="{box.x0}" x2="{box.x0 + box.w}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#eee"/><line x1="{box.x0 - 4}" x2="{box.x0}" y1="{y:.1f}" '
                   f'y2="{y:.1f}" stroke="#888"/>')
        out.append(f'<text x="{box.x0 - 6}" y="{y + 3.5:.1f}" font-size="10" '
                   f'text-anchor="end">{esc(fmt(v))}</text>')
    cy = box.y0 + box.h / 2
    out.append(f'<text x="14" y="{cy:.1f}" font-size="11" transform="rotate(-90 14 {cy:.1f})" '
               f'text-anchor="middle">{esc(label)}</text>')
    return out


def _x_axis(box, t_hi):
    ticks, fmt = time_ticks(box.t_lo, t_hi)
    out = []
    base = box.y0 + box.h
    for t in ticks:
        x = box.x(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{box.y0}" y2="{base}" '
                   f'stroke="#f2f2f2"/><line x1="{x:.1f}" x2="{x:.1f}" y1="{base}" '
                   f'y2="{base + 4}" stroke="#888"/>')
        out.append(f'<text x="{x:.1f}" y="{base + 16}" font-size="10" text-anchor="middle">'
                   f'{fmt_time(t, fmt)}</text>')
    return out


def _gaps(box, gaps, labelled):
    """Hatched bands where there are no records; the label upright when narrow."""
    out = []
    for gap in gaps:
        xa, xb = box.x(gap[0]), box.x(gap[1])
        label = esc(gap_label(gap))
        out.append(f'<rect class="gap" x="{xa:.1f}" y="{box.y0}" width="{max(xb - xa, 1):.1f}" '
                   f'height="{box.h}" fill="url(#nodata)"><title>{label}</title></rect>')
        if labelled:
            cx, cy = (xa + xb) / 2, box.y0 + box.h / 2
            turn = f' transform="rotate(-90 {cx:.1f} {cy:.1f})"' if xb - xa < 90 else ""
            half = 3 + 2.9 * len(label)
            out.append(f'<g{turn}><rect x="{cx - half:.1f}" y="{cy - 7:.1f}" '
                       f'width="{2 * half:.1f}" height="14" fill="#fff"/>'
                       f'<text class="gap" x="{cx:.1f}" y="{cy + 3.5:.1f}" font-size="10" '
                       f'text-anchor="middle" fill="{GAP_COLOR}">{label}</text></g>')
    return out


def _legend(box, entries):
    """entries: [(name, colour, swatch kind)] in a column right of the plot area."""
    out = []
    x = box.x0 + box.w + 12
    for j, (name, color, kind) in enumerate(entries[:14]):
        y = box.y0 + 10 + 15 * j
        shown = name if len(name) <= LEGEND_CHARS else name[:LEGEND_CHARS - 3] + "..."
        if kind in ("line", "dash"):
            dash = ' stroke-dasharray="5 3"' if kind == "dash" else ""
            out.append(f'<line x1="{x}" x2="{x + 16}" y1="{y - 4}" y2="{y - 4}" '
                       f'stroke="{color}" stroke-width="2"{dash}/>')
        else:
            out.append(_marker(x + 8, y - 4, 4, color, kind))
        out.append(f'<text x="{x + 22}" y="{y}" font-size="10"><title>{esc(name)}</title>'
                   f'{esc(shown)}</text>')
    if len(entries) > 14:
        out.append(f'<text x="{x}" y="{box.y0 + 10 + 15 * 14}" font-size="10" fill="#888">'
                   f'+{len(entries) - 14} more</text>')
    return out


def _marker(x, y, r, color, direction, title=None):
    inner = f"<title>{esc(title)}</title>" if title else ""
    if direction == "sent":                    # hollow triangle
        pts = f"{x:.1f},{y - r:.1f} {x - r:.1f},{y + r * 0.8:.1f} {x + r:.1f},{y + r * 0.8:.1f}"
        return (f'<polygon points="{pts}" fill="none" stroke="{color}" '
                f'stroke-width="1.2">{inner}</polygon>')
    return (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{color}" '
            f'fill-opacity="0.7" stroke="{color}">{inner}</circle>')


def _frame(box, extra=""):
    return (f'<rect x="{box.x0}" y="{box.y0}" width="{box.w}" height="{box.h}" fill="#fff" '
            f'stroke="#bbb"{extra}/>')


def svg_rates(panel, box_args, cmap, gaps=(), labelled=False):
    data, log = panel.lines, panel.scale == "log"
    top = peak(data)
    if log:
        v_lo, v_hi = log_limits(data)
        ticks = decade_ticks(v_lo, v_hi)
    else:
        v_lo = 0.0
        v_hi, ticks = linear_ticks(max(top, 1.0) * 1.3)
    box = _Box(*box_args, v_lo, v_hi, log)
    out = [_frame(box)]
    out += _y_axis(box, ticks, fmt_rate, panel.label + (" (log)" if log else ""))
    out += _x_axis(box, box_args[5])
    out += _gaps(box, gaps, labelled)
    lo, hi = box.t_lo, box.t_hi
    for n, (service, start, end, label) in enumerate(panel.spans):
        c = cmap.get(service, ALERT)
        xa, xb = box.x(max(start, lo)), box.x(min(end, hi))
        title = f"<title>{esc(label)}</title>" if label else ""
        out.append(f'<rect x="{xa:.1f}" y="{box.y0}" width="{max(xb - xa, 1):.1f}" '
                   f'height="{box.h}" fill="{c}" fill-opacity="0.15">{title}</rect>')
        if not label:
            continue
        ty = box.y0 + 11 + 11 * (n % 3)
        left = label_side(max(start, lo), lo, hi, gaps, len(label), min(end, hi)) == "left"
        anchor = 'text-anchor="end" ' if left else ""
        tx = xb - 2 if left else xa + 2
        out.append(f'<text x="{tx:.1f}" y="{ty}" {anchor}font-size="9" fill="{c}">'
                   f'{esc(label)}</text>')
    dashed = coinciding(data)
    bounds = panel.bounds(lo)
    for name, ys in data:
        width = 1.0 if name == OTHERS else 1.6
        dash = ' stroke-dasharray="5 4"' if name in dashed else ""
        for run in step_runs(bounds, ys, gaps, log):
            pts = " ".join(f"{box.x(t):.1f},{box.y(v):.1f}" for t, v in run)
            out.append(f'<polyline fill="none" stroke="{cmap.get(name, GREY)}" '
                       f'stroke-width="{width}"{dash} points="{pts}">'
                       f'<title>{esc(name)}</title></polyline>')
    for name, k, v in peak_labels(data, top, log=log):
        y = box.y(v) - 3
        if y < box.y0 + 44:                  # under the alert labels: below the peak
            y = box.y(v) + 12
        start, end = bounds[k]
        text = f"{name} peak {fmt_rate(v)}/s"
        left = label_side(end, lo, hi, gaps, len(text), start) == "left"
        x = box.x(start) - 3 if left else box.x(end) + 3
        anchor = ' text-anchor="end"' if left else ""
        out.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="10"{anchor} '
                   f'fill="{cmap.get(name, GREY)}">{esc(text)}</text>')
    out += _legend(box, [(n, cmap.get(n, GREY), "dash" if n in dashed else "line")
                         for n, _ in data])
    if not data:
        out.append(_none(box, "none", gaps))
    return out


def svg_idle(panel, box_args, cmap, gaps=(), labelled=False):
    pts = panel.points
    v_lo, v_hi = idle_limits(pts)
    box = _Box(*box_args, v_lo, v_hi, True)
    ticks = [t for t in IDLE_TICKS_MS if v_lo <= t <= v_hi]
    out = [_frame(box)]
    out += _y_axis(box, ticks, fmt_idle, panel.label)
    out += _x_axis(box, box_args[5])
    out += _gaps(box, gaps, labelled)
    most = max((p[4] for p in pts), default=1)
    for name, direction, t, idle_ms, n in pts:
        out.append(_marker(box.x(t), box.y(idle_ms), 2 + 6 * math.sqrt(n / most),
                           cmap.get(name, GREY), direction,
                           f"{name} {direction}: {n} at {fmt_idle(idle_ms)}"))
    out.append(f'<text x="{box.x0 + box.w}" y="{box.y0 - 5}" font-size="9" '
               f'text-anchor="end" fill="#555">{esc(panel.note)}; marker size: resets</text>')
    out += _legend(box, [(f"{n} ({d})", cmap.get(n, GREY), d)
                         for n, d in dict.fromkeys((p[0], p[1]) for p in pts)])
    if not pts:
        out.append(_none(box, "no reset records with an idle time", gaps))
    return out


def _none(box, text, gaps=()):
    x = box.x(clear_middle(box.t_lo, box.t_hi, gaps))
    return (f'<text x="{x:.1f}" y="{box.y0 + box.h / 2}" fill="#888" '
            f'text-anchor="middle">{esc(text)}</text>')


def render_svg(picture):
    panels = picture.panels
    height = TOP + len(panels) * (PANEL_H + GAP) + 4
    plot_w = WIDTH - LEFT - LEGEND - RIGHT
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">'),
           HATCH, f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>',
           f'<text x="8" y="18" font-size="12">{esc(picture.title)}</text>']
    for n, panel in enumerate(panels):
        y0 = TOP + n * (PANEL_H + GAP)
        args = (LEFT, y0, plot_w, PANEL_H, picture.start, picture.end)
        draw = svg_idle if isinstance(panel, IdlePanel) else svg_rates
        out += draw(panel, args, picture.colors, picture.gaps, labelled=n == 0)
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{height - 6}" font-size="10" '
               f'text-anchor="middle" fill="#555">local time</text>')
    out.append("</svg>")
    return "\n".join(out)


def render_html(picture):
    rows = []
    for service, _panel, start, end, signal, ratio in picture.alerts:
        r = ratio if isinstance(ratio, str) else f"{ratio:.1f}x"
        rows.append(f"<tr><td>{esc(service)}</td><td>{esc(signal)}</td><td>{r}</td>"
                    f"<td>{dt.datetime.fromtimestamp(start):%Y-%m-%d %H:%M:%S}</td>"
                    f"<td>{'open' if end is None else f'{end - start:.0f} s'}</td></tr>")
    table = ("<table><tr><th>service</th><th>signal</th><th>peak / baseline</th>"
             "<th>started</th><th>duration</th></tr>" + "".join(rows) + "</table>") \
        if rows else "<p>No alerts.</p>"
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{esc(picture.title)}</title>"
            "<style>body{font-family:sans-serif;margin:16px}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}</style></head><body>\n"
            + render_svg(picture) + "\n<h3>Alerts</h3>\n" + table
            + "\n</body></html>\n")
