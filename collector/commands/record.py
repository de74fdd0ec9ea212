"""`surgewatch record`: a profile (collector/aggregate/profile.py, format in
docs/detection.md) from a live window of this host (the `snapshot` pipeline), from stored
records (a segment directory or a stream file), or from a Prometheus server's history of
a fleet (collector/aggregate/fleet.py over collector/records/prometheus_api.py). Writing
it: collector/commands/profile_file.py; comparing two: collector/commands/compare.py.
"""
import math
import os
import sys
import time

from collector.aggregate.fleet import CONN_DIRECTIONS, HOST_LABEL, RESET_DIRECTIONS, FleetBuilder
from collector.aggregate.profile import ProfileBuilder
from collector.errors import BadInput
from collector.pipeline.build import build_collector
from collector.records.intervals import intervals
from collector.records.segments import list_segments
from collector.records.source import notes_only, open_records
from collector.host.timespans import flag_duration
from collector.views.text import plural


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


def written_note(doc, output):
    """The line on stderr saying what `record` wrote where."""
    return (f"surgewatch: {plural(len(doc['services']), 'service')} over "
            f"{doc['duration_s']:.1f}s written to {output}")


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


def parse_duration(text, flag):
    """Seconds from "90", "90s", "10m", "24h", "7d"; BadInput naming flag otherwise."""
    try:
        secs = flag_duration(text)
    except ValueError:
        secs = 0.0
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
