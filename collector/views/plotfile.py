"""PNG and SVG pictures of `surgewatch plot`, drawn with matplotlib (the `plot` extra).

The Picture comes shaped (collector/commands/plot.py; its types and what both renderers
share: collector/views/picture.py). Time is unix seconds on the x axis, labelled at the
same round local times as the HTML picture (collector/views/plotsvg.py). A rate line is
one matplotlib line per service with NaN where it breaks: after a gap in the records
(a hatched band, labelled "no data 14 min") and, on a log axis, at a zero.
"""
import math

from collector.aggregate.logrates import OTHERS
from collector.errors import BadInput
from collector.views.picture import (
    ALERT,
    GAP_COLOR,
    GREY,
    IDLE_TICKS_MS,
    MARKERS,
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
    marker_area,
    peak,
    peak_labels,
    step_runs,
    time_ticks,
)

NARROW = 0.08            # a gap narrower than this share of the width: its label upright


def render_matplotlib(picture, out_path):
    """Write picture to out_path (.png or .svg); BadInput when it cannot."""
    fig = figure(picture)
    import matplotlib.pyplot as plt

    try:
        fig.savefig(out_path, dpi=110)
    except OSError as e:
        raise BadInput(f"{out_path}: cannot write: {e.strerror or e}") from None
    finally:
        plt.close(fig)


def figure(picture):
    """The matplotlib Figure of picture (the caller closes it)."""
    try:
        import matplotlib  # lazy: an optional extra, and slow to import
    except ImportError:
        raise BadInput("PNG and SVG need matplotlib: pip install 'surgewatch[plot]' "
                       "(or write FILE.html, which needs nothing)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter

    panels = picture.panels
    fig, axes = plt.subplots(len(panels), 1, sharex=True, squeeze=False,
                             figsize=(13, 2.9 * len(panels) + 0.7))
    axes = [a[0] for a in axes]
    fig.suptitle(picture.title, fontsize=10, x=0.01, ha="left")
    for n, (ax, panel) in enumerate(zip(axes, panels)):
        _mpl_gaps(ax, picture, labelled=n == 0)
        if isinstance(panel, IdlePanel):
            _mpl_idle(ax, panel, picture)
        else:
            _mpl_rates(ax, panel, picture)
        ax.grid(True, alpha=0.3)
        ax.set_xlim(picture.start, picture.end)
    ticks, fmt = time_ticks(picture.start, picture.end)
    axes[-1].xaxis.set_major_locator(FixedLocator(ticks))
    axes[-1].xaxis.set_major_formatter(FuncFormatter(lambda t, _pos: fmt_time(t, fmt)))
    axes[-1].set_xlabel("local time")
    fig.tight_layout()
    return fig


def _mpl_gaps(ax, picture, labelled):
    width = max(picture.end - picture.start, 1e-9)
    for gap in picture.gaps:
        ax.axvspan(gap[0], gap[1], facecolor="#f6f6f6", edgecolor="#cfcfcf", hatch="///",
                   lw=0, zorder=0)
        if labelled:
            narrow = (gap[1] - gap[0]) / width < NARROW
            ax.text((gap[0] + gap[1]) / 2, 0.5, gap_label(gap), transform=ax.get_xaxis_transform(),
                    ha="center", va="center", rotation=90 if narrow else 0, fontsize=8,
                    color=GAP_COLOR, bbox={"facecolor": "white", "edgecolor": "none",
                                           "pad": 1.5})


def _mpl_rates(ax, panel, picture):
    cmap, gaps, lo, hi = picture.colors, picture.gaps, picture.start, picture.end
    data, log = panel.lines, panel.scale == "log"
    bounds = panel.bounds(lo)
    top = peak(data)
    dashed = coinciding(data)
    for name, ys in data:
        xs, vs = [], []
        for run in step_runs(bounds, ys, gaps, log):
            if xs:                          # a break: nothing drawn between the runs
                xs.append(run[0][0])
                vs.append(math.nan)
            xs += [t for t, _ in run]
            vs += [v for _, v in run]
        ax.plot(xs, vs, color=cmap[name], lw=1.4 if name != OTHERS else 1.0,
                ls=(0, (4, 3)) if name in dashed else "-", label=name)
    for name, k, v in peak_labels(data, top, log=log):
        text = f"{name} peak {fmt_rate(v)}/s"
        left = label_side(bounds[k][1], lo, hi, gaps, len(text), bounds[k][0]) == "left"
        ax.annotate(text, (bounds[k][0] if left else bounds[k][1], v),
                    xytext=(-4 if left else 4, 4), textcoords="offset points", fontsize=8,
                    ha="right" if left else "left", color=cmap[name])
    for n, (service, start, end, label) in enumerate(panel.spans):
        c = cmap.get(service, ALERT)
        ax.axvspan(start, end, color=c, alpha=0.15, lw=0)
        if not label:
            continue
        left = label_side(start, lo, hi, gaps, len(label), end) == "left"
        ax.text(end if left else start, 0.98 - 0.09 * (n % 3),
                f"{label} " if left else f" {label}", ha="right" if left else "left",
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
        ax.text(clear_middle(lo, hi, gaps), 0.5, "none", transform=ax.get_xaxis_transform(),
                ha="center", color="#888")


def _mpl_idle(ax, panel, picture):
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    cmap = picture.colors
    pts = panel.points
    most = max((p[4] for p in pts), default=0)
    groups = {}
    for p in pts:
        groups.setdefault((p[0], p[1]), []).append(p)
    for (name, direction), ps in groups.items():
        c = cmap.get(name, GREY)
        filled = direction == "received"
        ax.scatter([p[2] for p in ps], [p[3] for p in ps],
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
        ax.text(clear_middle(picture.start, picture.end, picture.gaps), 0.5,
                "no reset records with an idle time", transform=ax.get_xaxis_transform(),
                ha="center", color="#888")
