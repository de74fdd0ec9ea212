"""Prometheus `/metrics` for `surgewatch run` (prometheus-client's exposition and escaping).

PrometheusSink consumes the same records as every other sink and keeps running totals:
log writes and bytes per service (and per service and path), TCP resets per service and
direction, and the collector's own health from `stats`. A scrape renders them through a
custom collector, so a scrape never waits on the collection loop beyond one lock.

Label cardinality is bounded (docs/operations.md, "Prometheus"):
- at most `max_services` service label values; services seen once the table is full are
  counted under service="(other)";
- per service at most `max_paths_per_service` path label values (first come); further
  paths of that service are counted under path="(other)";
- a service or path with no activity for `label_idle_s` gives its label back (its
  series disappear from the next scrape; activity after that starts it again from 0,
  which Prometheus's rate() and increase() read as a counter reset).
The per-service counters are exact whatever the folding of paths.
"""
import socket
import threading
import time
from http.server import ThreadingHTTPServer

from collector.errors import BadInput
from collector.records.model import LOSS_FIELDS, RESET_LOSS_FIELDS, clean_text

OTHER = "(other)"
PREFIX = "surgewatch"

# stats field -> (metric name without prefix, help); summed into counters
_COUNTER_HELP = {
    "evictions": ("map_evictions_total", "Kernel map entries evicted (their counts lost)."),
    "lost_events": ("lost_events_total", "File-open events the kernel could not deliver."),
    "unresolved_writes": ("unresolved_writes_total",
                          "Log writes whose destination could not be identified."),
    "lost_writes": ("lost_writes_total",
                    "Write calls not counted because a kernel map was full."),
    "fd_walk_failed": ("fd_walk_failed_total",
                       "Write calls whose fd could not be resolved in the kernel."),
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
}
_STATS_COUNTERS = {k: _COUNTER_HELP[k] for k in LOSS_FIELDS + RESET_LOSS_FIELDS + ("cpu_s",)}


def _label(text):
    return clean_text(str(text))


class _Bounded:
    """label -> value, at most `limit` labels plus OTHER, idle labels expire."""

    def __init__(self, limit, idle_s, make):
        self.limit, self.idle_s, self.make = limit, idle_s, make
        self.items = {}            # label -> [value, last active time]

    def get(self, label, now):
        item = self.items.get(label)
        if item is None:
            if label != OTHER and \
                    sum(1 for k in self.items if k != OTHER) >= self.limit:
                label = OTHER
                item = self.items.get(label)
            if item is None:
                item = self.items[label] = [self.make(), now]
        item[1] = now
        return item[0]

    def expire(self, now):
        for label in [k for k, (_, last) in self.items.items() if now - last >= self.idle_s]:
            del self.items[label]


class _Service:
    def __init__(self, max_paths, idle_s):
        self.writes = self.bytes = 0
        self.resets = {"sent": 0, "received": 0}
        self.kinds = {}            # sent resets by kind
        self.idle_hist = []        # cumulative idle-before-reset bucket counts (24)
        self.idle_count = 0
        self.paths = _Bounded(max_paths, idle_s, lambda: [0, 0])


class PrometheusSink:
    name = "prometheus"

    def __init__(self, host="127.0.0.1", port=9477, max_services=200,
                 max_paths_per_service=5, label_idle_s=3600.0, clock=time.monotonic,
                 serve=True):
        from prometheus_client import CollectorRegistry
        from prometheus_client.process_collector import ProcessCollector

        self.clock = clock
        self.max_paths = max_paths_per_service
        self.idle_s = label_idle_s
        self._lock = threading.Lock()
        self._services = _Bounded(max_services, label_idle_s,
                                  lambda: _Service(self.max_paths, self.idle_s))
        self._counters = {k: 0.0 for k in _STATS_COUNTERS}
        self._gauges = {}
        self._alerts = {}          # (service, signal) -> 1 open / 0 closed (`alert` records)
        self._intervals = 0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Exporter(self))
        ProcessCollector(namespace=PREFIX, registry=self.registry)
        self.server = None
        if serve:
            self.server = _serve(host, port, self.registry)
            self.address = self.server.server_address[:2]
            self._thread = threading.Thread(target=self.server.serve_forever,
                                            kwargs={"poll_interval": 0.25},
                                            name="surgewatch-prometheus", daemon=True)
            self._thread.start()

    @classmethod
    def from_config(cls, pc):
        from collector.config import parse_listen

        host, port = parse_listen(pc.listen)
        return cls(host, port, max_services=pc.max_services,
                   max_paths_per_service=pc.max_paths_per_service,
                   label_idle_s=pc.label_idle_s)

    # -- records in --------------------------------------------------------------------
    def write_interval(self, records):
        now = self.clock()
        with self._lock:
            for rec in records:
                kind = rec.get("type")
                if kind == "rate":
                    self._rate(rec, now)
                elif kind == "stats":
                    self._stats(rec, now)
                elif kind == "alert":
                    self._alert(rec)

    def _alert(self, rec):
        """surgewatch_alert{service,signal}: 1 while open, 0 once closed; closed series
        leave with their service's label; at most 4 x max_services series."""
        key = (_label(rec.get("service", "?")), _label(rec.get("signal", "?")))
        if key in self._alerts or len(self._alerts) < 4 * self._services.limit:
            self._alerts[key] = 1 if rec.get("state") == "open" else 0

    def _rate(self, rec, now):
        svc = self._services.get(_label(rec.get("service", "?")), now)
        svc.writes += int(rec.get("log_writes", 0))
        svc.bytes += int(rec.get("log_bytes", 0))
        for p in rec.get("paths") or ():
            pv = svc.paths.get(_label(p.get("path", "?")), now)
            pv[0] += int(p.get("writes", 0))
            pv[1] += int(p.get("bytes", 0))
        for direction in ("sent", "received"):
            svc.resets[direction] += int(rec.get(f"resets_{direction}", 0) or 0)

    def add_reset_details(self, per_service):
        """Exact per-service reset kinds and idle-before-reset histograms of one interval
        ({service: collector.aggregate.resets.ServiceResets}, from the reset stage)."""
        now = self.clock()
        with self._lock:
            for name, r in per_service.items():
                svc = self._services.get(_label(name), now)
                for kind, n in r.kinds.items():
                    k = _label(kind)
                    svc.kinds[k] = svc.kinds.get(k, 0) + int(n)
                hist = list(r.idle_hist or ())
                if hist:
                    if len(svc.idle_hist) < len(hist):
                        svc.idle_hist += [0] * (len(hist) - len(svc.idle_hist))
                    for i, n in enumerate(hist):
                        svc.idle_hist[i] += int(n)
                    svc.idle_count += sum(int(n) for n in hist)

    def _stats(self, rec, now):
        self._intervals += 1
        for key in _STATS_COUNTERS:
            v = rec.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self._counters[key] += v
        g = self._gauges
        g["drain_seconds"] = float(rec.get("drain_ms", 0.0)) / 1000.0
        g["interval_seconds"] = float(rec.get("interval", 0.0))
        g["map_keys"] = float(rec.get("keys", 0))
        g["map_capacity"] = float(rec.get("map_capacity", 0))
        cap = g["map_capacity"]
        g["map_fill_ratio"] = g["map_keys"] / cap if cap else 0.0
        g["rss_bytes"] = float(rec.get("rss_bytes", 0))
        self._services.expire(now)
        for key in [k for k, v in self._alerts.items()
                    if not v and k[0] not in self._services.items]:
            del self._alerts[key]
        for _, (svc, _) in self._services.items.items():
            svc.paths.expire(now)

    # -- scrape ------------------------------------------------------------------------
    def families(self):
        from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily)

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
        idle = HistogramMetricFamily(f"{P}_tcp_reset_idle_seconds", "Time a connection was "
                                     "idle before it was reset (where defined).",
                                     labels=["service"])
        with self._lock:
            for name, (svc, _) in sorted(self._services.items.items()):
                writes.add_metric([name], svc.writes)
                wbytes.add_metric([name], svc.bytes)
                for path, ((w, b), _) in sorted(svc.paths.items.items()):
                    pwrites.add_metric([name, path], w)
                    pbytes.add_metric([name, path], b)
                for direction in ("sent", "received"):
                    resets.add_metric([name, direction], svc.resets[direction])
                for kind, n in sorted(svc.kinds.items()):
                    kinds.add_metric([name, kind], n)
                if svc.idle_hist:
                    buckets, acc = [], 0
                    last = len(svc.idle_hist) - 1
                    for i, n in enumerate(svc.idle_hist):
                        acc += n
                        le = "+Inf" if i == last else repr((2 ** i) / 1000.0)
                        buckets.append((le, acc))
                    idle.add_metric([name], buckets, sum_value=None)
            counters = dict(self._counters)
            gauges = dict(self._gauges)
            alerts = sorted(self._alerts.items())
            intervals = self._intervals
        out = [writes, wbytes, pwrites, pbytes, resets, kinds, idle]
        alert = GaugeMetricFamily(f"{P}_alert", "1 while an alert is open for the service and "
                                  "signal (docs/detection.md), 0 once it closed.",
                                  labels=["service", "signal"])
        for (name, sig), v in alerts:
            alert.add_metric([name, sig], v)
        out.append(alert)
        out.append(CounterMetricFamily(f"{P}_intervals", "Collection intervals completed.",
                                       value=intervals))
        for key, (metric, doc) in _STATS_COUNTERS.items():
            out.append(CounterMetricFamily(f"{P}_{metric[:-len('_total')]}", doc,
                                           value=counters[key]))
        docs = {
            "drain_seconds": "Time the last interval's kernel map drain took.",
            "interval_seconds": "Measured length of the last interval.",
            "map_keys": "Entries drained from the counting map in the last interval.",
            "map_capacity": "Maximum entries of the counting map.",
            "map_fill_ratio": "map_keys / map_capacity of the last interval.",
            "rss_bytes": "Collector resident memory at the end of the last interval.",
        }
        for key, doc in docs.items():
            if key in gauges:
                out.append(GaugeMetricFamily(f"{P}_{key}", doc, value=gauges[key]))
        return out

    def render(self):
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def close(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self._thread.join(timeout=2.0)
            self.server = None


class _Exporter:
    def __init__(self, sink):
        self.sink = sink

    def describe(self):
        return []

    def collect(self):
        return self.sink.families()


def _serve(host, port, registry):
    from prometheus_client.exposition import MetricsHandler

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise BadInput(f"prometheus listen {host}:{port}: {e.strerror}; set "
                       "outputs.prometheus.listen to HOST:PORT") from None
    family = infos[0][0]

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True
        allow_reuse_address = True

    handler = MetricsHandler.factory(registry)
    handler.log_message = lambda *a, **k: None       # no access log on stderr
    try:
        return Server(infos[0][4][:2], handler)
    except OSError as e:
        raise BadInput(f"prometheus listen {host}:{port}: {e.strerror or e}; set "
                       "outputs.prometheus.listen to a free HOST:PORT, or "
                       "outputs.prometheus.enabled = false") from None
