"""Outputs a local user can reach (docs/reliability.md, "Hostile local user"): the
Prometheus endpoint bounds its connections and drops half-sent requests, the stream socket
bounds its subscribers (in all and per user), and a reload is atomic: the new outputs open
before the old close, a refused one leaves the running ones as they were."""
import dataclasses
import io
import socket
import time
import urllib.request

import pytest

from collector.config.schema import PrometheusConfig, SocketConfig
from collector.errors import BadInput
from collector.sinks import unixsock
from collector.sinks.prometheus import PrometheusSink
from collector.sinks.registry import OutputContext, Outputs
from collector.sinks.unixsock import UnixSocketSink, subscribe
from tests.support.loopback import free_port
from tests.unit.test_unixsock_sink import meta, stats, wait_for


def _scrape(url):
    return urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()


def _value(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _half_requests(port, n):
    held = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1")
        held.append(s)
    return held


def _closed_by_server(s, timeout=10):
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def test_half_requests_are_bounded_and_a_scrape_still_gets_through():
    sink = PrometheusSink("127.0.0.1", free_port())
    sink.server.set_limits(4, 60)         # as the registry does from the config
    try:
        held = _half_requests(sink.address[1], 10)
        # all 10 were accepted one after the other: each over the 4th evicted the oldest
        # one still waiting for its request, so the first 6 were closed by the server
        assert all(_closed_by_server(s) for s in held[:6])
        assert wait_for(lambda: sink.server.connections() == 4)
        text = _scrape(sink.url)          # evicts one more waiting half request
        assert _value(text, "surgewatch_prometheus_connections_dropped_total") == 7
        assert _value(text, "surgewatch_prometheus_connections") == 4
        for s in held:
            s.close()
    finally:
        sink.close()


def test_a_request_not_whole_within_the_timeout_is_dropped():
    sink = PrometheusSink("127.0.0.1", free_port())
    sink.server.set_limits(4, 0.3)
    try:
        (s,) = _half_requests(sink.address[1], 1)
        assert _closed_by_server(s)       # no answer: dropped at the deadline
        assert sink.server.dropped == 1
        assert "surgewatch_prometheus_connections_dropped_total 1.0" in _scrape(sink.url)
    finally:
        sink.close()


def test_subscribers_bounded_in_all_and_per_user(tmp_path, monkeypatch):
    uids = iter([1000] * 3 + [1001] * 3 + [0] * 3)
    monkeypatch.setattr(unixsock, "_peer_uid", lambda conn: next(uids))
    path = str(tmp_path / "s.sock")
    sink = UnixSocketSink(path, host="h", max_subscribers=5, max_subscribers_per_uid=2)
    subs = []
    try:
        sink.set_meta(meta())
        for _ in range(9):
            subs.append(subscribe(path, timeout=5))
            time.sleep(0.05)                              # accepted in this order
        # uid 1000: 2 of 3; uid 1001: 2 of 3; root: 1 (then the 5 slots are taken)
        assert wait_for(lambda: sink.subscribers() == 5 and sink.refused_total == 4)
        kept = [s for s in subs if not _closed_by_server(s, timeout=0.5)]
        assert len(kept) == 5
    finally:
        for s in subs:
            s.close()
        sink.close()


def test_a_subscriber_that_takes_nothing_is_dropped_after_the_stall_timeout(tmp_path):
    path = str(tmp_path / "s.sock")
    sink = UnixSocketSink(path, host="h", stall_timeout_s=0.2)
    sub = subscribe(path, timeout=5)
    sub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sink.set_meta(meta())
        assert wait_for(lambda: sink.subscribers() == 1)
        end = time.monotonic() + 20
        while sink.subscribers() and time.monotonic() < end:
            sink.write_interval([stats(0, pad=20000)])    # fills its socket, never read
            time.sleep(0.05)
        assert sink.subscribers() == 0 and sink.stalled_total == 1
    finally:
        sub.close()
        sink.close()


# -- reload ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Cfg:
    stdout_format: str = "none"
    segments: object = dataclasses.field(
        default_factory=lambda: dataclasses.make_dataclass("S", [("enabled", bool, False)])())
    socket: SocketConfig = SocketConfig(enabled=False)
    prometheus: PrometheusConfig = PrometheusConfig(enabled=False)


def _outputs():
    lines = []
    return Outputs(OutputContext(lambda level, msg, key=None: lines.append(msg),
                                 io.StringIO())), lines


def _rate(n):
    return {"v": "1.5", "type": "rate", "service": "a.service", "log_writes": n, "log_bytes": n,
            "paths": []}


def test_refused_reload_keeps_prometheus_and_socket_running(tmp_path):
    port, taken = free_port(), socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    path = str(tmp_path / "s.sock")
    cfg = Cfg(socket=SocketConfig(path=path),
              prometheus=PrometheusConfig(listen=f"127.0.0.1:{port}"))
    outputs, _ = _outputs()
    outputs.open(cfg)
    prom, sock = outputs.get("prometheus"), outputs.get("socket")
    try:
        outputs.set_meta(meta())
        outputs.write([_rate(7)])
        sub = subscribe(path, timeout=5)
        new = dataclasses.replace(cfg, prometheus=PrometheusConfig(
            listen=f"127.0.0.1:{taken.getsockname()[1]}"), socket=SocketConfig(
            path=str(tmp_path / "other.sock")))
        with pytest.raises(BadInput):
            outputs.open(new, cfg)
        assert outputs.get("prometheus") is prom and outputs.get("socket") is sock
        assert not (tmp_path / "other.sock").exists()     # the half-made new one is gone
        outputs.write([_rate(5), stats(1)])
        assert 'surgewatch_log_writes_total{service="a.service"} 12.0' in _scrape(prom.url)
        sub.settimeout(5)
        assert sub.recv(1)                                # the socket still delivers
        sub.close()
    finally:
        taken.close()
        outputs.close()


def test_reload_of_the_same_port_and_path_reconfigures_in_place(tmp_path):
    port = free_port()
    path = str(tmp_path / "s.sock")
    cfg = Cfg(socket=SocketConfig(path=path, mode=0o660),
              prometheus=PrometheusConfig(listen=f"127.0.0.1:{port}"))
    outputs, _ = _outputs()
    outputs.open(cfg)
    prom, sock = outputs.get("prometheus"), outputs.get("socket")
    try:
        outputs.write([_rate(3)])
        assert sock.stall_timeout_s == 60.0               # the config's, through registry
        new = dataclasses.replace(
            cfg, socket=SocketConfig(path=path, mode=0o600, max_subscribers=2,
                                     stall_timeout_s=7),
            prometheus=PrometheusConfig(listen=f"127.0.0.1:{port}", max_services=7,
                                        max_connections=3))
        outputs.open(new, cfg)
        assert outputs.get("prometheus") is prom and outputs.get("socket") is sock
        assert sorted(outputs.reconfigured) == ["prometheus", "socket"]
        assert outputs.opened == []
        import os
        assert os.stat(path).st_mode & 0o777 == 0o600 and sock.max_subscribers == 2
        assert sock.stall_timeout_s == 7.0
        assert prom._services.limit == 7 and prom.server.max_connections == 3
        assert 'surgewatch_log_writes_total{service="a.service"} 3.0' in _scrape(prom.url)
    finally:
        outputs.close()


def test_reload_to_a_free_port_opens_it_before_closing_the_old(tmp_path):
    old_port, new_port = free_port(), free_port()
    cfg = Cfg(prometheus=PrometheusConfig(listen=f"127.0.0.1:{old_port}"))
    outputs, _ = _outputs()
    outputs.open(cfg)
    old = outputs.get("prometheus")
    try:
        new = Cfg(prometheus=PrometheusConfig(listen=f"127.0.0.1:{new_port}"))
        outputs.open(new, cfg)
        assert outputs.get("prometheus") is not old and outputs.opened == ["prometheus"]
        assert old.server is None                         # closed after the new opened
        _scrape(outputs.get("prometheus").url)
    finally:
        outputs.close()


def test_the_daemon_raises_its_open_files_soft_limit_to_the_hard_one():
    import subprocess
    import sys

    code = ("import resource\n"
            "from collector.commands.process import raise_open_files_limit\n"
            "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
            "lines = []\n"
            "got = raise_open_files_limit(lambda level, msg, key=None: lines.append(msg))\n"
            "now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]\n"
            "print(got == now == hard or hard == resource.RLIM_INFINITY, lines)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("True"), out
