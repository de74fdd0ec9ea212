"""Prometheus exposition of PrometheusSink's totals (collector/sinks/prometheus.py): metric
names and help, the metric families a scrape renders, the HTTP server. The text format and
its escaping are prometheus-client's (generate_latest, MetricsHandler).

prometheus_client is imported where it is used: a daemon without the Prometheus output
never loads it.
"""
import socket
import threading
import time
from http.server import ThreadingHTTPServer

from collector.errors import BadInput
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


MAX_CONNECTIONS = 16          # concurrent HTTP connections (a thread and an fd each)
REQUEST_TIMEOUT_S = 10.0      # the whole request line and headers must arrive within


def serve(host, port, registry, max_connections=MAX_CONNECTIONS,
          request_timeout_s=REQUEST_TIMEOUT_S):
    """A BoundedServer serving registry on host:port (not started); BadInput when the
    address cannot be resolved or bound."""
    from prometheus_client.exposition import MetricsHandler

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise BadInput(f"prometheus listen {host}:{port}: {e.strerror}; set "
                       "outputs.prometheus.listen to HOST:PORT") from None
    family = infos[0][0]

    class Server(BoundedServer):
        address_family = family

    handler = _handler(MetricsHandler.factory(registry), request_timeout_s)
    try:
        server = Server(infos[0][4][:2], handler, max_connections, request_timeout_s)
    except OSError as e:
        raise BadInput(f"prometheus listen {host}:{port}: {e.strerror or e}; set "
                       "outputs.prometheus.listen to a free HOST:PORT, or "
                       "outputs.prometheus.enabled = false") from None
    registry.register(_HttpExporter(server))
    return server


class _HttpExporter:
    """The endpoint's own bounds in every scrape."""

    def __init__(self, server):
        self.server = server

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        return [CounterMetricFamily(f"{PREFIX}_prometheus_connections_dropped",
                                    "Connections to this endpoint closed before an answer: "
                                    "the request did not arrive whole within "
                                    "request_timeout_s, or max_connections were open.",
                                    value=self.server.dropped),
                GaugeMetricFamily(f"{PREFIX}_prometheus_connections",
                                  "Connections to this endpoint open now (this scrape's "
                                  "included).", value=self.server.connections())]


class BoundedServer(ThreadingHTTPServer):
    """A thread per connection, but at most `max_connections` at once, and a request
    (line and headers) that has not fully arrived `request_timeout_s` after the connection
    was accepted is dropped (docs/reliability.md, "Hostile local user": any local user can
    connect to the port and send half a request).

    When every slot is taken, the oldest connection still waiting for its request makes
    room for the new one; one already being answered never does (a scrape sends its
    request at once, so a flood of half requests cannot keep scrapes out). With no such
    connection the new one is closed. `dropped` counts every connection closed early."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, handler, max_connections, request_timeout_s):
        self.dropped = 0
        self._conns = {}                 # socket -> [accepted (monotonic), reading request]
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)
        self.set_limits(max_connections, request_timeout_s)

    def set_limits(self, max_connections, request_timeout_s):
        """New bounds for the running server (a reload): from the next connection on."""
        self.max_connections = max(1, int(max_connections))
        self.request_timeout_s = float(request_timeout_s)
        self.RequestHandlerClass.timeout = self.request_timeout_s

    def verify_request(self, request, client_address):
        with self._conns_lock:
            if len(self._conns) >= self.max_connections:
                waiting = [(t, id(s), s) for s, (t, reading) in self._conns.items() if reading]
                if not waiting:
                    self.dropped += 1
                    return False         # socketserver closes it
                self._drop(min(waiting)[2])
            self._conns[request] = [time.monotonic(), True]
        return True

    def request_read(self, request):
        """The handler has the whole request: the connection is being answered."""
        with self._conns_lock:
            conn = self._conns.get(request)
            if conn is not None:
                conn[1] = False

    def _drop(self, sock):
        """Wake the connection's thread (its recv returns EOF) and free its slot; the
        thread closes the socket (caller holds the lock)."""
        self._conns.pop(sock, None)
        self.dropped += 1
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def service_actions(self):
        """Each turn of serve_forever (poll_interval): drop requests past their time."""
        now = time.monotonic()
        with self._conns_lock:
            late = [s for s, (t, reading) in self._conns.items()
                    if reading and now - t >= self.request_timeout_s]
            for s in late:
                self._drop(s)

    def shutdown_request(self, request):
        with self._conns_lock:
            conn = self._conns.pop(request, None)
            if conn is not None and conn[1]:
                self.dropped += 1        # its request never came whole (a socket timeout)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        pass                             # a client that went away: nothing to report

    def connections(self):
        with self._conns_lock:
            return len(self._conns)


LANDING = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>surgewatch</title></head>
<body><h1>surgewatch</h1>
<p>Per-service log-write rates and TCP resets, from kernel probes.</p>
<ul><li><a href="metrics">Metrics</a> (Prometheus text format)</li></ul>
<p>version {version}, record schema {schema}</p>
</body></html>
"""


def _handler(metrics, timeout_s=REQUEST_TIMEOUT_S):
    """prometheus-client's handler on /metrics, a landing page on / (as node_exporter),
    404 elsewhere; no access log on stderr; each socket operation times out."""

    class Handler(metrics):
        timeout = timeout_s

        def parse_request(self):
            ok = super().parse_request()
            if ok:
                self.server.request_read(self.request)
            return ok

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                return super().do_GET()
            if path == "/":
                self._reply(200, "text/html; charset=utf-8",
                            LANDING.format(**build_info()))
            else:
                self._reply(404, "text/plain; charset=utf-8",
                            "not found: metrics are at /metrics\n")

        def _reply(self, code, ctype, text):
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a, **k):
            pass

    return Handler
