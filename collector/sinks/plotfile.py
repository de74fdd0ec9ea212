"""Picture files of `surgewatch plot`: PNG and SVG drawn with matplotlib (the `plot` extra),
HTML as a self-contained page with an inline SVG drawn here (no JavaScript, no matplotlib).

A Picture is already shaped (collector/commands/plot.py): per panel the binned lines of
the top services plus OTHERS, and the alert spans; this module only draws and writes it.
"""
import datetime as dt
import html
import math
import os
from dataclasses import dataclass

from collector.aggregate.logrates import OTHERS
from collector.errors import BadInput

PICTURE_TYPES = (".png", ".svg", ".html", ".htm")
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f"]


@dataclass
class Panel:
    """One panel: its y label, the point times, [(name, values)] and [(service, start, end)]."""

    label: str
    times: list
    lines: list
    spans: list


@dataclass
class Picture:
    title: str
    start: float          # unix s: the first interval's start
    end: float            # unix s: the last interval's end
    panels: list          # [Panel], top to bottom
    alerts: list          # [service, panel, start, end or None, signal]


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
        try:
            with open(out_path, "w", encoding="utf-8") as f:
                f.write(render_html(picture))
        except OSError as e:
            raise BadInput(f"{out_path}: cannot write: {e.strerror or e}") from None
    else:
        render_matplotlib(picture, out_path)


def colors(names):
    return {name: ("#7f7f7f" if name == OTHERS else PALETTE[i % (len(PALETTE) - 1)])
            for i, name in enumerate(names)}


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


def _peak(data):
    return max((max(ys) for _, ys in data if ys), default=0.0)


# -- matplotlib: PNG, SVG ----------------------------------------------------------------------
def render_matplotlib(picture, out_path):
    try:
        import matplotlib      # lazy: an optional extra, and slow to import
    except ImportError:
        raise BadInput("PNG and SVG need matplotlib: pip install 'surgewatch[plot]' "
                       "(or write FILE.html, which needs nothing)") from None
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    panels = picture.panels
    fig, axes = plt.subplots(len(panels), 1, sharex=True, squeeze=False,
                             figsize=(13, 3.6 * len(panels) + 0.6))
    axes = [a[0] for a in axes]
    fig.suptitle(picture.title, fontsize=10, x=0.01, ha="left")
    for ax, panel in zip(axes, panels):
        data = panel.lines
        xs = [dt.datetime.fromtimestamp(t) for t in panel.times]
        cmap = colors([n for n, _ in data])
        peak = _peak(data)
        for name, ys in data:
            ax.plot(xs, ys, color=cmap[name], lw=1.4 if name != OTHERS else 1.0,
                    label=name, drawstyle="steps-pre")
        for name, k, v in peak_labels(data, peak):
            ax.annotate(f"{name} peak {_fmt(v)}/s", (xs[k], v), xytext=(4, 4),
                        textcoords="offset points", fontsize=8, color=cmap[name])
        for service, start, end in panel.spans:
            c = cmap.get(service, "#d62728")
            ax.axvspan(dt.datetime.fromtimestamp(start), dt.datetime.fromtimestamp(end),
                       color=c, alpha=0.15, lw=0)
            ax.text(dt.datetime.fromtimestamp(start), 1.0, f" alert: {service}",
                    transform=ax.get_xaxis_transform(), va="top", fontsize=7, color=c)
        ax.set_ylabel(panel.label)
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
def svg_panel(panel, x0, y0, width, height, t_lo, t_hi):
    """SVG elements of one panel in the box (x0, y0, width, height)."""
    esc = html.escape
    times, data = panel.times, panel.lines
    peak = _peak(data)
    ymax = _nice_max(peak * 1.15)
    span = max(t_hi - t_lo, 1e-9)

    def X(t):
        return x0 + (t - t_lo) / span * width

    def Y(v):
        return y0 + height - v / ymax * height

    out = [f'<rect x="{x0}" y="{y0}" width="{width}" height="{height}" fill="#fff" '
           f'stroke="#bbb"/>']
    cmap = colors([n for n, _ in data])
    for service, start, end in panel.spans:
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
               f'{esc(panel.label)}</text>')
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


def render_svg(picture, width=1100):
    panels = picture.panels
    ph, left, right, top_m, gap = 260, 70, 20, 30, 40
    height = top_m + len(panels) * (ph + gap) + 10
    t_lo, t_hi = picture.start, picture.end
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
           f'<text x="8" y="18" font-size="12">{html.escape(picture.title)}</text>']
    for n, panel in enumerate(panels):
        y0 = top_m + n * (ph + gap)
        out += svg_panel(panel, left, y0, width - left - right, ph, t_lo, t_hi)
        for k in range(7):                   # time ticks
            t = t_lo + (t_hi - t_lo) * k / 6
            x = left + (width - left - right) * k / 6
            out.append(f'<text x="{x:.1f}" y="{y0 + ph + 14}" font-size="10" '
                       f'text-anchor="middle">'
                       f'{dt.datetime.fromtimestamp(t):%H:%M:%S}</text>')
    out.append("</svg>")
    return "\n".join(out)


def render_html(picture):
    esc = html.escape
    rows = []
    for service, panel, start, end, signal in picture.alerts:
        rows.append(f"<tr><td>{esc(service)}</td><td>{esc(signal)}</td>"
                    f"<td>{dt.datetime.fromtimestamp(start):%Y-%m-%d %H:%M:%S}</td>"
                    f"<td>{'open' if end is None else f'{end - start:.0f} s'}</td></tr>")
    table = ("<table><tr><th>service</th><th>signal</th><th>started</th><th>duration</th>"
             "</tr>" + "".join(rows) + "</table>") if rows else "<p>No alerts.</p>"
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{esc(picture.title)}</title>"
            "<style>body{font-family:sans-serif;margin:16px}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}</style></head><body>\n"
            + render_svg(picture) + "\n<h3>Alerts</h3>\n" + table
            + "\n</body></html>\n")
