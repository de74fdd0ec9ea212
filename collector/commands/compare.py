"""`surgewatch compare`: two profiles side by side (collector/aggregate/compare.py), as a
table or JSON; exit 0 within limits, 1 when a service exceeds them, 2 on bad input.
"""
import json
import math
import sys

from collector.aggregate.compare import ABSOLUTE, MIN_CONNS, PER_CONNECTION, compare
from collector.aggregate.profile import SIGNAL_LABELS
from collector.commands.profile_file import read_profile
from collector.errors import EXIT_FAILURE, EXIT_OK, BadInput
from collector.views.text import display_width, escape, plural


# -- compare -----------------------------------------------------------------------------
def _num(v):
    if v is None:
        return "-"
    if v == 0:
        return "0"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.1f}{unit}"
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _ratio(cell):
    r = cell["ratio"]
    if r is None:
        return "-"
    if math.isinf(r):
        return "new"
    return f"{r:.2f}x"


def _side(side):
    n = side["hosts"]
    if side["origin"] == "prometheus":
        return f"Prometheus, {plural(n, 'host')} (a host's rate over the range)"
    return f"local record, {plural(n, 'host')} (per-interval rates)"


def _basis_lines(result):
    """Which basis each service was judged on, and why a service was not per connection."""
    per, absolute = [], {}
    for row in result["rows"]:
        if row["basis"] == PER_CONNECTION:
            per.append(row["service"])
        else:
            absolute.setdefault(row["basis_note"], []).append(row["service"])
    out = [f"basis {result['basis']} (--basis {result['basis_requested'].replace('_', '-')})"]
    if per:
        out.append(f"per connection (at least {result['min_conns']:g} connections): "
                   + ", ".join(map(escape, per)))
    for why, names in absolute.items():
        out.append(f"absolute ({escape(why)}): " + ", ".join(map(escape, names)))
    return ["; ".join(out)]


def _pad(text, cells, right=False):
    """text padded to `cells` terminal cells (wide characters take two)."""
    fill = " " * max(0, cells - display_width(text))
    return fill + text if right else text + fill


def _columns(cells, widths):
    """One table line: columns 1-2 left-aligned, 3-5 right-aligned, the last as it is."""
    parts = [_pad(c, w, right=i >= 2) for i, (c, w) in enumerate(zip(cells[:5], widths))]
    return "  ".join(parts + [cells[5]]).rstrip()


def render_compare(result, base_name, cur_name):
    """The comparison as a text table: one line per service and signal."""
    head = ("SERVICE", "SIGNAL", "BASELINE", "CURRENT", "RATIO", "")
    lines = []
    for row in result["rows"]:
        # a service name is any local user's process name: escaped (collector/views/text.py)
        name = escape(row["service"]) + (f" ({row['status']})" if row["status"] else "")
        first = True
        for sig, c in row["signals"].items():
            lines.append((name if first else "", SIGNAL_LABELS[sig], _num(c["baseline"]),
                          _num(c["current"]), _ratio(c), "EXCEEDS" if c["exceeds"] else ""))
            first = False
    widths = [max(display_width(x[i]) for x in [head] + lines) for i in range(len(head))]
    what = "rate per second" if result["basis"] == ABSOLUTE else \
        "per connection or TCP KiB (rate per second where absolute)"
    out = [f"baseline {escape(str(base_name))}, current {escape(str(cur_name))}: "
           f"{result['stat']} {what}; "
           f"limits: ratio {result['max_ratio']:g}, min {result['min_rate']:g}/s "
           f"({result['min_bytes_rate']:g} bytes/s)"
           + (f"; only services matching --service {', '.join(map(escape, result['services']))}"
              if result.get("services") else "")]
    out.append(_columns(head, widths))
    out += [_columns(x, widths) for x in lines]
    bad = [escape(r["service"]) for r in result["rows"] if r["exceeds"]]
    out += _basis_lines(result)
    sides = result.get("sides")
    if sides:
        out.append(f"sources: baseline {_side(sides['baseline'])}; "
                   f"current {_side(sides['current'])}")
    if result["signals_not_compared"]:
        out.append("not compared (only one profile has them): " + ", ".join(
            SIGNAL_LABELS[s] for s in result["signals_not_compared"]))
    out.append(f"FAIL: {len(bad)} service{'s' if len(bad) != 1 else ''} over the limits: "
               + ", ".join(bad) if bad else "ok: every service within the limits")
    return "\n".join(out) + "\n"


def compare_json(result, base_path, cur_path):
    """The comparison as the `compare --json` document (docs/detection.md): every row's
    status names where the service is: `matched` (both profiles), `new`, `gone`."""
    doc = dict(result, baseline=base_path, current=cur_path)
    doc["rows"] = []
    for row in result["rows"]:
        row = dict(row, status=row["status"] or "matched")
        row["signals"] = {sig: dict(c, ratio=None if c["ratio"] is not None
                                    and math.isinf(c["ratio"]) else c["ratio"])
                          for sig, c in row["signals"].items()}   # JSON has no infinity
        doc["rows"].append(row)
    return doc


def run_compare(base_path, cur_path, max_ratio=3.0, min_rate=10.0, min_bytes_rate=10240.0,
                stat="mean", as_json=False, stdout=None, basis="auto", min_conns=MIN_CONNS,
                services=()):
    stdout = stdout if stdout is not None else sys.stdout
    base = read_profile(base_path)
    cur = read_profile(cur_path)
    try:
        result = compare(base, cur, max_ratio=max_ratio, min_rate=min_rate,
                         min_bytes_rate=min_bytes_rate, stat=stat, basis=basis,
                         min_conns=min_conns, services=tuple(services))
    except ValueError as e:           # --basis per-connection without load on a side
        raise BadInput(f"--basis per-connection: {e}") from None
    if result["services_unmatched"]:  # a typo must not pass the gate on nothing compared
        names = sorted(set(base["services"]) | set(cur["services"]))
        raise BadInput(f"--service {escape(result['services_unmatched'][0])}: no service of "
                       "either profile matches it (a glob on the whole name); their "
                       f"services: {', '.join(map(escape, names)) or 'none'}")
    if as_json:
        stdout.write(json.dumps(compare_json(result, base_path, cur_path), indent=1) + "\n")
    else:
        stdout.write(render_compare(result, base_path, cur_path))
    stdout.flush()
    return EXIT_OK if result["ok"] else EXIT_FAILURE
