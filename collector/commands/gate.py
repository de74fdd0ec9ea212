"""`surgewatch record` and `surgewatch compare`: the test-environment gate.

record: a profile (collector/aggregate/profile.py, format in docs/detection.md) from a
live window of this host (the `snapshot` pipeline), from stored records (a segment
directory or a stream file), or from a Prometheus server's history of a fleet
(collector/aggregate/fleet.py over collector/records/prometheus_api.py). compare: two profiles side by side, exit 0 within limits,
1 when a service exceeds them, 2 on bad input.
"""
import json
import math
import os
import re
import sys
import time

from collector.aggregate.fleet import CONN_DIRECTIONS, HOST_LABEL, RESET_DIRECTIONS, FleetBuilder
from collector.aggregate.compare import ABSOLUTE, MIN_CONNS, PER_CONNECTION, compare
from collector.aggregate.profile import SIGNAL_LABELS, ProfileBuilder, check_profile
from collector.errors import EXIT_FAILURE, EXIT_OK, BadInput
from collector.pipeline.build import build_collector
from collector.records.intervals import intervals
from collector.records.segments import list_segments
from collector.records.source import notes_only, open_records
from collector.sinks.text import display_width, escape, plural


# -- profile files ---------------------------------------------------------------------
def write_profile(doc, path):
    """Write doc as JSON to path ("-": stdout); a file is replaced atomically."""
    text = json.dumps(doc, indent=1, sort_keys=False, allow_nan=False) + "\n"
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise BadInput(f"{path}: cannot write the profile: {e.strerror or e}") from None


def read_profile(path):
    """The profile in path, checked; BadInput (one line, exit 2) when it is not usable."""
    try:
        with open(path, "rb") as f:
            data = f.read(64 << 20)
    except OSError as e:
        raise BadInput(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not a surgewatch profile (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise BadInput(f"{path}: corrupt profile: invalid JSON at line {e.lineno} "
                       f"column {e.colno} ({e.msg})") from None
    problem = check_profile(doc, path)
    if problem:
        raise BadInput(problem)
    return doc


# -- record ----------------------------------------------------------------------------
def record_live(duration, interval, rules, argv=(), probes=None):
    """A profile of this host over `duration` seconds (probes loaded as for snapshot)."""
    collector = build_collector(rules, resets=True, probes=probes)
    builder = ProfileBuilder()
    try:
        collector.run(duration, interval, lambda iv: builder.add_interval(iv.rates, iv.stats))
    finally:
        collector.close()
    return builder.profile("live", {"interval_s": float(interval)})


def _records(source, on_note, seen=None):
    for rec in open_records(source, notes_only(on_note)):
        if seen is not None:
            seen[0] += 1
        yield rec


def _nothing_to_profile(source, records, cutoff):
    """Why a stored source gave no interval, and what to do (as plot says it)."""
    if os.path.isdir(source) and not list_segments(source):
        return (f"{source}: no segment files (seg-*.msgpack) in this directory; give the "
                "directory `surgewatch run` writes (outputs.segments.dir, default "
                "/var/lib/surgewatch) or a stream file")
    if not records:
        return f"{source}: no records in it (empty); nothing to profile yet"
    if cutoff is not None:
        return (f"{source}: no complete interval after the cutoff; give an earlier --since "
                "or a longer --duration")
    return (f"{source}: {plural(records, 'record')} but no complete interval yet (an "
            "interval ends with its stats record); record again once the collector has "
            "run for one interval")


def record_from(source, duration=None, since=None, on_note=None):
    """A profile of stored records: all of them, those from `since` (unix s) on, and/or
    the last `duration` seconds of the source."""
    on_note = on_note or (lambda msg: sys.stderr.write(f"surgewatch: note: {msg}\n"))
    cutoff = since
    if duration is not None:
        last = None
        for _rates, stats in intervals(_records(source, lambda msg: None)):
            ts = stats.get("ts")
            if isinstance(ts, (int, float)):
                last = ts if last is None else max(last, ts)
        if last is not None:
            start = last - duration
            cutoff = start if cutoff is None else max(cutoff, start)
    builder, seen = ProfileBuilder(), [0]
    for rates, stats in intervals(_records(source, on_note, seen)):
        ts = stats.get("ts")
        # an interval is in the window when it ends after the cutoff (+1 ms for float noise)
        if cutoff is not None and isinstance(ts, (int, float)) and ts <= cutoff + 1e-3:
            continue
        builder.add_interval(rates, stats)
    try:
        return builder.profile(os.path.abspath(source))
    except ValueError:
        raise BadInput(_nothing_to_profile(str(source), seen[0], cutoff)) from None


# -- record --from-prometheus ------------------------------------------------------------
METRICS = (("surgewatch_log_writes_total", "log_writes_per_s"),
           ("surgewatch_log_write_bytes_total", "log_bytes_per_s"),
           ("surgewatch_tcp_sent_bytes_total", "tcp_bytes_out_per_s"))
RESETS_METRIC = "surgewatch_tcp_resets_total"
CONNS_METRIC = "surgewatch_tcp_connections_total"
MAX_POINTS = 10_000          # Prometheus refuses over 11,000 points per series


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d)?")
_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text, flag):
    """Seconds from "90", "90s", "10m", "24h", "7d"; BadInput naming flag otherwise."""
    m = _DURATION.fullmatch(text.strip())
    secs = float(m.group(1)) * _UNITS[m.group(2)] if m else 0.0
    if secs <= 0:
        raise BadInput(f"{flag} {text!r}: expected a duration such as 90s, 10m, 24h or 7d")
    return secs


def default_step(range_s):
    """60 s, or coarser so that the range stays within MAX_POINTS steps."""
    return float(max(60, math.ceil(range_s / MAX_POINTS)))


def fleet_queries(match, step):
    """(signal or None, PromQL, split) per query: per service and host, the rate over
    each step (windows of one step tile the range). The load counters (schema 1.5) are
    queried always; a fleet without them answers no series and gets no load signals."""
    m = match.strip()
    if not (m.startswith("{") and m.endswith("}")):
        raise BadInput(f"--match {match!r}: expected a label selector in braces, e.g. "
                       "'{env=\"prod\"}'")
    by = f"service, {HOST_LABEL}"
    out = [(sig, f"sum by ({by}) (rate({name}{m}[{step:g}s]))", None)
           for name, sig in METRICS]
    for name, directions in ((RESETS_METRIC, RESET_DIRECTIONS),
                             (CONNS_METRIC, CONN_DIRECTIONS)):
        out.append((None, f"sum by ({by}, direction) (rate({name}{m}[{step:g}s]))",
                    ("direction", directions)))
    return out


def record_from_prometheus(url, match="{}", range_s=86400.0, step=None, end=None,
                           bearer_token_file=None, ca_file=None, clock=None):
    """A fleet profile (basis per_host) of `range_s` seconds up to `end` (unix s, default
    now) from the Prometheus server at url."""
    from collector.records.prometheus_api import PrometheusAPI

    step = default_step(range_s) if step is None else float(step)
    if step > range_s:
        raise BadInput(f"--step {step:g}s is longer than --range {range_s:g}s; give a "
                       "shorter step")
    queries = fleet_queries(match, step)
    api = PrometheusAPI(url, bearer_token_file=bearer_token_file, ca_file=ca_file)
    end = (clock or time.time)() if end is None else float(end)
    end = math.floor(end / step) * step           # aligned: the same steps on every run
    start = end - range_s + step                  # the first sample covers [end-range, +step]
    builder = FleetBuilder(step)
    for signal, expr, split in queries:
        builder.add_matrix(signal, api.query_range(expr, start, end, step), split=split)
    meta = {"prometheus": {"url": api.url, "match": match, "range_s": float(range_s),
                           "step_s": step, "end": end}}
    try:
        return builder.profile(f"prometheus {api.url} {match}", meta)
    except ValueError:
        raise BadInput(f"no surgewatch data for {match} at {api.url} in the {range_s:g}s "
                       f"before {end:.0f} (unix s): check --match (a label the scrape "
                       "adds, e.g. job or env) and --range; --step must be at least twice "
                       "the scrape interval") from None


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
        # a service name is any local user's process name: escaped (collector/sinks/text.py)
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
