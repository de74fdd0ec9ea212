"""Prometheus exposition of PrometheusSink's totals (collector/sinks/prometheus.py): metric
names and help, the metric families a scrape renders (the HTTP endpoint that serves them:
collector/sinks/prometheus_http.py). The text format and its escaping are
prometheus-client's (generate_latest).

prometheus_client is imported where it is used: a daemon without the Prometheus output
never loads it.
"""
from collector.records.model import LOSS_FIELDS, RESET_LOSS_FIELDS

PREFIX = "surgewatch"

# stats field -> (metric name without prefix, help); summed into counters
_COUNTER_HELP = {
    "lost_events": ("lost_events_total", "File-open events the kernel could not deliver."),
    "unresolved_writes": ("unresolved_writes_total",
                          "Log writes whose destination could not be identified."),
    "lost_writes": ("lost_writes_total",
                    "Write calls not counted because a kernel map was full."),
    "fd_walk_failed": ("fd_walk_failed_total",
                       "Write calls whose fd could not be resolved in the kernel."),
    "probe_runs_missed": ("probe_runs_missed_total",
                          "Probe program runs the kernel skipped (another BPF program was "
                          "running on that CPU): their writes or resets are not counted."),
    "cpu_s": ("cpu_seconds_total", "CPU time (user + system) used by the collector."),
    "segment_dropped_records": ("segment_dropped_records_total",
                                "Records the segment store dropped (disk full, I/O error)."),
    "resets_lost": ("resets_lost_total",
                    "TCP resets not counted because the kernel count map was full."),
    "resets_events_lost": ("reset_events_lost_total",
                           "Per-reset events the ring buffer could not take."),
    "resets_owner_unknown": ("resets_owner_unknown_total",
                             "Resets on sockets whose owner the probe never saw."),
    "resets_owner_map_full": ("resets_owner_map_full_total",
                              "Socket owners that could not be recorded (map full)."),
    "reset_records_suppressed": ("reset_records_suppressed_total",
                                 "`reset` records not emitted (per-interval limit)."),
    "load_lost": ("load_lost_total",
                  "Processes whose TCP load went uncounted in an interval (loads map full)."),
}
_COUNTER_HELP["host_resource_errors"] = (
    "host_resource_errors_total", "Host lookups (a process's cgroup, fds) the collector "
    "could not make for want of file descriptors or memory; their writes are in "
    "unresolved_writes.")
STATS_COUNTERS = {k: _COUNTER_HELP[k]
                  for k in LOSS_FIELDS + RESET_LOSS_FIELDS + ("cpu_s", "host_resource_errors")}

# gauge (from the last `stats` record) -> help, in exposition order
GAUGE_HELP = {
    "drain_seconds": "Time the last interval's kernel map drain took.",
    "interval_seconds": "Measured length of the last interval.",
    "map_keys": "Entries drained from the counting map in the last interval.",
    "map_capacity": "Maximum entries of the counting map.",
    "map_fill_ratio": "map_keys / map_capacity of the last interval.",
    "rss_bytes": "Collector resident memory at the end of the last interval.",
}


def service_families(services):
    """The per-service families from [(service label, its totals)], in label order."""
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

    P = PREFIX
    writes = CounterMetricFamily(f"{P}_log_writes", "Write calls to log destinations, "
                                 "by service.", labels=["service"])
    wbytes = CounterMetricFamily(f"{P}_log_write_bytes", "Bytes written to log "
                                 "destinations, by service.", labels=["service"])
    pwrites = CounterMetricFamily(f"{P}_log_path_writes", "Write calls to log "
                                  "destinations, by service and path (bounded: see "
                                  "docs/operations.md).", labels=["service", "path"])
    pbytes = CounterMetricFamily(f"{P}_log_path_write_bytes", "Bytes written to log "
                                 "destinations, by service and path (bounded).",
                                 labels=["service", "path"])
    resets = CounterMetricFamily(f"{P}_tcp_resets", "TCP resets by owning service and "
                                 "direction (sent, received).",
                                 labels=["service", "direction"])
    kinds = CounterMetricFamily(f"{P}_tcp_resets_sent_by_kind", "TCP resets sent, by "
                                "service and kind (abort, reply, no_socket).",
                                labels=["service", "kind"])
    conns = CounterMetricFamily(f"{P}_tcp_connections", "TCP connections of the service: "
                                "accept()ed (accepted) or outgoing that reached "
                                "ESTABLISHED (connected).", labels=["service", "direction"])
    tbytes = CounterMetricFamily(f"{P}_tcp_sent_bytes", "Bytes the service's sends put "
                                 "into TCP sockets (where the kernel counts them exactly).",
                                 labels=["service"])
    lost = CounterMetricFamily(f"{P}_log_lost_messages", "Messages journald dropped of the "
                               "service (its rate limit), from journald's own notices.",
                               labels=["service"])
    idle = HistogramMetricFamily(f"{P}_tcp_reset_idle_seconds", "Time a connection was "
                                 "idle before it was reset (where defined).",
                                 labels=["service"])
    for name, svc in services:
        writes.add_metric([name], svc.writes)
        wbytes.add_metric([name], svc.bytes)
        for path, ((w, b), _) in sorted(svc.paths.items.items()):
            pwrites.add_metric([name, path], w)
            pbytes.add_metric([name, path], b)
        for direction in ("sent", "received"):
            resets.add_metric([name, direction], svc.resets[direction])
        if svc.conns is not None:
            for direction in ("accepted", "connected"):
                conns.add_metric([name, direction], svc.conns[direction])
        if svc.tcp_bytes is not None:
            tbytes.add_metric([name], svc.tcp_bytes)
        if svc.lost is not None:
            lost.add_metric([name], svc.lost)
        for kind, n in sorted(svc.kinds.items()):
            kinds.add_metric([name, kind], n)
        if svc.idle_hist:
            idle.add_metric([name], _idle_buckets(svc.idle_hist),
                            sum_value=idle_sum_lower_bound(svc.idle_hist))
    return [writes, wbytes, pwrites, pbytes, resets, kinds, idle, conns, tbytes, lost]


def _idle_buckets(hist):
    """Cumulative (le, count) of per-bucket counts: bucket i ends at 2**i ms, the last is +Inf.
    The +Inf bucket is also the histogram's _count (prometheus-client writes it)."""
    buckets, acc = [], 0
    last = len(hist) - 1
    for i, n in enumerate(hist):
        acc += n
        le = "+Inf" if i == last else repr((2 ** i) / 1000.0)
        buckets.append((le, acc))
    return buckets


def idle_sum_lower_bound(hist):
    """The histogram's _sum, in seconds: each reset at its bucket's lower edge (bucket 0,
    < 1 ms, at 0; bucket i at 2**(i-1) ms). The probe counts resets per power-of-two
    bucket, not their idle times, so no exact sum exists; this one is a true lower bound,
    and below the last bucket (>= 2**22 ms, open-ended) the exact sum is under 2 x it plus
    1 ms per reset of bucket 0 (docs/operations.md)."""
    return sum(n * 2 ** (i - 1) for i, n in enumerate(hist) if i) / 1000.0


def build_info_family(info):
    """surgewatch_build_info{...} 1: one series, its labels what this daemon runs."""
    from prometheus_client.core import GaugeMetricFamily

    fam = GaugeMetricFamily(f"{PREFIX}_build_info", "Always 1; the labels say what runs: "
                            "surgewatch version, record schema, Python, kernel release.",
                            labels=list(info))
    fam.add_metric(list(info.values()), 1)
    return fam


def build_info():
    """The labels of surgewatch_build_info (fixed for the process: cardinality 1)."""
    import platform

    from collector import __version__
    from collector.records.model import SCHEMA_VERSION

    return {"version": __version__, "schema": SCHEMA_VERSION,
            "python": platform.python_version(), "kernel": platform.release()}


def alert_family(alerts):
    """surgewatch_alert from sorted [((service, signal), 1 open / 0 closed)]."""
    from prometheus_client.core import GaugeMetricFamily

    alert = GaugeMetricFamily(f"{PREFIX}_alert", "1 while an alert is open for the service "
                              "and signal (docs/detection.md), 0 once it closed.",
                              labels=["service", "signal"])
    for (name, sig), v in alerts:
        alert.add_metric([name, sig], v)
    return alert


def loss_families(loss):
    """surgewatch_log_loss_risk and surgewatch_log_loss_limit from sorted
    [((service, limit), (1 at risk / 0, allowed lines/s))] (docs/detection.md, "Loss risk")."""
    from prometheus_client.core import GaugeMetricFamily

    risk = GaugeMetricFamily(f"{PREFIX}_log_loss_risk", "1 while the service logs faster "
                             "than a limit lets through (journald's rate limit, a "
                             "[capacity] glob), 0 once below again.",
                             labels=["service", "limit"])
    allowed = GaugeMetricFamily(f"{PREFIX}_log_loss_limit", "Lines/s the limit lets "
                                "through: journald's burst (disk-scaled) / "
                                "RateLimitIntervalSec, or the [capacity] value.",
                                labels=["service", "limit"])
    for (service, limit), (v, per_s) in loss:
        risk.add_metric([service, limit], v)
        allowed.add_metric([service, limit], per_s)
    return [risk, allowed]


def lost_uid_family(lost_uids):
    """surgewatch_lost_writes_by_uid_total{uid} from sorted [(uid label, writes)]: who
    wrote the writes in surgewatch_lost_writes_total (the labels sum to it)."""
    from prometheus_client.core import CounterMetricFamily

    fam = CounterMetricFamily(f"{PREFIX}_lost_writes_by_uid", "Write calls not counted "
                              "because the log-write probe's count map was full, by the "
                              "writer's uid (at most 64 uids, the rest uid=\"other\"); "
                              "they sum to surgewatch_lost_writes_total.", labels=["uid"])
    for uid, n in lost_uids:
        fam.add_metric([uid], n)
    return fam


def health_families(intervals, counters, gauges):
    """The collector's own health: intervals done, the summed stats counters, the gauges
    of the last interval (none before the first `stats` record)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    P = PREFIX
    out = [CounterMetricFamily(f"{P}_intervals", "Collection intervals completed.",
                               value=intervals)]
    for key, (metric, doc) in STATS_COUNTERS.items():
        out.append(CounterMetricFamily(f"{P}_{metric[:-len('_total')]}", doc,
                                       value=counters[key]))
    for key, doc in GAUGE_HELP.items():
        if key in gauges:
            out.append(GaugeMetricFamily(f"{P}_{key}", doc, value=gauges[key]))
    return out


class Exporter:
    """A prometheus-client custom collector: every scrape asks the sink for its families."""

    def __init__(self, sink):
        self.sink = sink

    def describe(self):
        return []

    def collect(self):
        return self.sink.families()
