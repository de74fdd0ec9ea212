"""The HTTP endpoint of the Prometheus output: `/metrics` (prometheus-client's handler
over the sink's registry), a landing page on `/`, and a server that bounds connections and
how long a request may take to arrive (docs/reliability.md, "Hostile local user").
"""
import socket
import threading
import time
from http.server import ThreadingHTTPServer

from collector.errors import BadInput
from collector.sinks.prometheus_exposition import PREFIX, build_info


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
