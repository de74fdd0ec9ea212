"""`surgewatch plot -o FILE.html`: one self-contained page, the Picture drawn as an inline
SVG here (no matplotlib, no JavaScript), and a table of the alerts.

Each panel has its legend in a column right of the plot area (never over the data),
y ticks at round values (1, 2, 2.5, 5 x 10^k; decades on a log axis), and time ticks at
round local times with tick marks, every label inside the picture."""
import datetime as dt
import html
import math
import time

from collector.aggregate.logrates import OTHERS
from collector.sinks.plotfile import (
    ALERT,
    GREY,
    IDLE_TICKS_MS,
    IdlePanel,
    coinciding,
    fmt_idle,
    fmt_rate,
    idle_limits,
    log_limits,
    peak,
    peak_labels,
)

WIDTH, LEFT, LEGEND, RIGHT = 1100, 74, 210, 8
PANEL_H, TOP, GAP = 220, 34, 52
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
              43200, 86400)
LEGEND_CHARS = 28
esc = html.escape


def time_ticks(t_lo, t_hi, most=8):
    """Unix times of round local times in [t_lo, t_hi], at most `most`, and the strftime
    format their labels need."""
    span = max(t_hi - t_lo, 1e-9)
    step = next((s for s in TIME_STEPS if span / s <= most), TIME_STEPS[-1])
    off = time.localtime(t_lo).tm_gmtoff          # align on the local clock
    first = math.ceil((t_lo + off) / step) * step - off
    ticks = []
    t = first
    while t <= t_hi + 1e-6:
        ticks.append(t)
        t += step
    return ticks, ("%H:%M:%S" if step < 60 else "%H:%M")


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
        self.t_lo, self.span = t_lo, max(t_hi - t_lo, 1e-9)
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
                   f'{dt.datetime.fromtimestamp(t).strftime(fmt)}</text>')
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


def svg_rates(panel, box_args, cmap):
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
    for n, (service, start, end, label) in enumerate(panel.spans):
        c = cmap.get(service, ALERT)
        xa = box.x(max(start, box.t_lo))
        xb = box.x(min(end, box.t_lo + box.span))
        out.append(f'<rect x="{xa:.1f}" y="{box.y0}" width="{max(xb - xa, 1):.1f}" '
                   f'height="{box.h}" fill="{c}" fill-opacity="0.15">'
                   f'<title>{esc(label)}</title></rect>')
        ty = box.y0 + 11 + 11 * (n % 3)
        anchor = 'text-anchor="end" ' if xa > box.x0 + box.w * 0.7 else ""
        tx = xb - 2 if anchor else xa + 2
        out.append(f'<text x="{tx:.1f}" y="{ty}" {anchor}font-size="9" fill="{c}">'
                   f'{esc(label)}</text>')
    dashed = coinciding(data)
    for name, ys in data:
        width = 1.0 if name == OTHERS else 1.6
        dash = ' stroke-dasharray="5 4"' if name in dashed else ""
        for pts in _steps(box, panel.times, ys, log):
            out.append(f'<polyline fill="none" stroke="{cmap.get(name, GREY)}" '
                       f'stroke-width="{width}"{dash} points="{" ".join(pts)}">'
                       f'<title>{esc(name)}</title></polyline>')
    for name, k, v in peak_labels(data, top, log=log):
        y = box.y(v) - 3
        if y < box.y0 + 44:                  # under the alert labels: below the peak
            y = box.y(v) + 12
        out.append(f'<text x="{min(box.x(panel.times[k]) + 3, box.x0 + box.w - 150):.1f}" '
                   f'y="{y:.1f}" font-size="10" '
                   f'fill="{cmap.get(name, GREY)}">{esc(name)} peak {fmt_rate(v)}/s</text>')
    out += _legend(box, [(n, cmap.get(n, GREY), "dash" if n in dashed else "line")
                         for n, _ in data])
    if not data:
        out.append(_none(box, "none"))
    return out


def _steps(box, times, ys, log):
    """Polylines of a step series: the rate holds over its interval; on a log axis a
    zero is a gap (a new polyline after it)."""
    runs, pts, prev = [], [], box.t_lo
    for t, v in zip(times, ys):
        if log and v <= 0:
            if pts:
                runs.append(pts)
            pts = []
        else:
            pts += [f"{box.x(prev):.1f},{box.y(v):.1f}", f"{box.x(t):.1f},{box.y(v):.1f}"]
        prev = t
    if pts:
        runs.append(pts)
    return runs


def svg_idle(panel, box_args, cmap):
    pts = panel.points
    v_lo, v_hi = idle_limits(pts)
    box = _Box(*box_args, v_lo, v_hi, True)
    ticks = [t for t in IDLE_TICKS_MS if v_lo <= t <= v_hi]
    out = [_frame(box)]
    out += _y_axis(box, ticks, fmt_idle, panel.label)
    out += _x_axis(box, box_args[5])
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
        out.append(_none(box, "no reset records with an idle time"))
    return out


def _none(box, text):
    return (f'<text x="{box.x0 + box.w / 2}" y="{box.y0 + box.h / 2}" fill="#888" '
            f'text-anchor="middle">{esc(text)}</text>')


def render_svg(picture):
    panels = picture.panels
    height = TOP + len(panels) * (PANEL_H + GAP) + 4
    plot_w = WIDTH - LEFT - LEGEND - RIGHT
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">'),
           f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>',
           f'<text x="8" y="18" font-size="12">{esc(picture.title)}</text>']
    for n, panel in enumerate(panels):
        y0 = TOP + n * (PANEL_H + GAP)
        args = (LEFT, y0, plot_w, PANEL_H, picture.start, picture.end)
        draw = svg_idle if isinstance(panel, IdlePanel) else svg_rates
        out += draw(panel, args, picture.colors)
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
