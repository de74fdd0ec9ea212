"""`surgewatch run` outputs as real processes: the stream socket with two subscribers,
Prometheus /metrics scraped over loopback, after a known workload."""
import json
import os
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.owncgroup import TIME_SCALE, unit_cgroup
from tests.support.daemon import SURGEWATCH, Daemon
from tests.support.loopback import abort_connections
from tests.support.writers import unique_writer

pytestmark = pytest.mark.privileged


def test_socket_two_subscribers_get_the_whole_live_stream(tmp_path, workload_bin):
    from collector.sinks.unixsock import subscribe
    from collector.records.stream import read_records

    writer = unique_writer(workload_bin, tmp_path, f"swsock{os.getpid() % 10000}")
    d = Daemon(tmp_path, interval=0.3, stdout="none", socket=True)
    tail = None
    try:
        d.wait_started(lambda: os.path.exists(d.sock))
        raw = subscribe(d.sock, timeout=60)
        it = read_records(raw.makefile("rb", buffering=0), d.sock)
        assert next(it)["type"] == "meta"          # probes attached (meta follows loading)
        tail = subprocess.Popen([SURGEWATCH, "tail", "--socket", d.sock, "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = tail.stdout.readline()
        assert json.loads(first)["type"] == "meta", tail.stderr.read()
        log = d.logdir / "app.log"
        for _ in range(3):
            subprocess.run([writer, str(log), "700", "40"], check=True)
        time.sleep(0.5)
        code, err = d.stop(), d.err
        raw_recs = list(it)                         # the daemon hung up at its stop
        tail_out, tail_err = tail.communicate(timeout=30)
    finally:
        d.stop()
        if tail is not None and tail.poll() is None:
            tail.kill()
            tail.wait()
    assert code == 0, err
    assert tail.returncode == 0, tail_err
    tail_recs = [json.loads(l) for l in tail_out.splitlines()]
    for recs in (raw_recs, tail_recs):
        stats = [r for r in recs if r["type"] == "stats"]
        assert not any(r["type"] == "dropped" for r in recs)
        paths = [p for r in recs if r["type"] == "rate" for p in r["paths"]
                 if p["path"] == str(log)]
        assert sum(p["writes"] for p in paths) == 2100
        assert sum(p["bytes"] for p in paths) == 2100 * 40
        assert stats and stats[-1]["seq"] == max(r["seq"] for r in recs if "seq" in r)
    # both saw the same intervals from the moment they subscribed to the daemon's stop
    raw_last = [r["seq"] for r in raw_recs if r["type"] == "stats"][-1]
    tail_last = [r["seq"] for r in tail_recs if r["type"] == "stats"][-1]
    assert raw_last == tail_last
    assert not os.path.exists(d.sock)               # removed at stop


def test_socket_path_taken_by_a_file_exits_2(tmp_path):
    d_sock = tmp_path / "run" / "stream.sock"
    d_sock.parent.mkdir()
    d_sock.write_text("not a socket")
    cfg = tmp_path / "sw.toml"
    cfg.write_text(f'[outputs.socket]\npath = "{d_sock}"\n[outputs.prometheus]\n'
                   'enabled = false\n[outputs.segments]\nenabled = false\n')
    res = subprocess.run([SURGEWATCH, "run", "--config", str(cfg), "--format", "none"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip() == (f"surgewatch: error: socket {d_sock}: the path is taken by "
                                  "a file that is not a socket; remove it or set "
                                  "outputs.socket.path to another path")
    assert d_sock.read_text() == "not a socket"


def scrape(port):
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        text = r.read().decode("utf-8")
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_prometheus_endpoint_exact_counters_after_a_known_workload(tmp_path, workload_bin):
    name = f"swprom{os.getpid() % 10000}"
    writer = unique_writer(workload_bin, tmp_path, name)
    d = Daemon(tmp_path, interval=0.3, stdout="none", prometheus=True)
    assert d.port != 2024
    with unit_cgroup(name) as cg:
        service = cg.service
        m, code, err = _prometheus_workload(d, writer, service, cg)
    assert m.get(("surgewatch_log_writes_total", frozenset({("service", service)}))) == 1000
    assert m.get(("surgewatch_log_write_bytes_total", frozenset({("service", service)}))) == 64000
    assert m.get(("surgewatch_log_path_writes_total",
                  frozenset({("service", service), ("path", str(d.logdir / "prom.log"))}))) == 1000
    assert m[("surgewatch_intervals_total", frozenset())] >= 3
    assert m[("surgewatch_map_capacity", frozenset())] > 0
    assert 0 <= m[("surgewatch_map_fill_ratio", frozenset())] <= 1
    assert m[("surgewatch_lost_writes_total", frozenset())] == 0
    assert m[("surgewatch_rss_bytes", frozenset())] > 1e6
    assert code == 0, err


def _prometheus_workload(d, writer, service, cg):
    try:
        # the endpoint is up before the probes load; an interval means they are attached
        d.wait_started(lambda: scrape(d.port).get(("surgewatch_intervals_total",
                                                   frozenset()), 0) >= 1)
        log = d.logdir / "prom.log"
        for lines in (500, 300, 200):
            subprocess.run([writer, str(log), str(lines), "64"], check=True, preexec_fn=cg.enter)
        key_w = ("surgewatch_log_writes_total", frozenset({("service", service)}))
        end = time.monotonic() + 10 * TIME_SCALE
        while time.monotonic() < end and scrape(d.port).get(key_w) != 1000:
            time.sleep(0.1)
        time.sleep(0.7)                         # two more intervals: nothing more arrives
        m = scrape(d.port)
        code, err = d.stop(), d.err
    finally:
        d.stop()
    return m, code, err
    with pytest.raises(OSError):                # the endpoint went with the daemon
        socket.create_connection(("127.0.0.1", d.port), timeout=2).close()


def test_run_counts_resets_exactly_with_bounded_reset_records(tmp_path):
    n = 12
    tag = os.getpid() % 10000
    d = Daemon(tmp_path, interval=0.3, stdout="json", prometheus=True,
               config_extra="[resets]\nmax_records = 3\n")
    with unit_cgroup(f"swrsts{tag}") as srv_cg, unit_cgroup(f"swrstc{tag}") as cli_cg:
        srv_name, cli_name = srv_cg.service, cli_cg.service
        try:
            meta = d.wait_meta()                     # meta: both probes attached
            assert meta["type"] == "meta" and "resets" in meta["probes"], meta
            port, client, server = abort_connections(n, "swrsts", srv_cg, "swrstc", cli_cg)
            assert client.stdout.strip() == str(n), client.stderr
            assert server.wait(timeout=30) == 0
            time.sleep(0.7)                          # two more intervals
            m = scrape(d.port)
            code, err = d.stop(), d.err
        finally:
            d.stop()
    assert code == 0, err
    recs = d.records[1:]                             # after the meta record
    rates = [r for r in recs if r["type"] == "rate"]
    assert all("resets_sent" in r and "resets_received" in r for r in rates)
    assert sum(r["resets_sent"] for r in rates if r["service"] == srv_name) == n
    assert sum(r["resets_received"] for r in rates if r["service"] == srv_name) == 0
    assert sum(r["resets_received"] for r in rates if r["service"] == cli_name) == n
    assert sum(r["resets_sent"] for r in rates if r["service"] == cli_name) == 0
    # neither logs: their records come from resets and TCP load alone, and are still
    # owned by the system units they are (slots rank by it: collector/aggregate/slots.py)
    assert {r["owner"] for r in rates if r["service"] in (srv_name, cli_name)} == \
        {"system"}, [(r["seq"], r["service"], r["owner"]) for r in rates]
    # reset records: bounded per interval, the rest counted
    resets = [r for r in recs if r["type"] == "reset"]
    stats = {r["seq"]: r for r in recs if r["type"] == "stats"}
    per_seq = {}
    for r in resets:
        per_seq[r["seq"]] = per_seq.get(r["seq"], 0) + 1
    assert max(per_seq.values()) <= 3
    assert sum(s["reset_records_suppressed"] for s in stats.values()) >= 2 * n - len(resets)
    for r in resets:
        if r["service"] == srv_name:
            assert r["direction"] == "sent" and r["kind"] == "abort"
            assert r["local_port"] == port
    # records of an interval: rate, then reset, then stats
    rank = {"rate": 0, "reset": 1, "alert": 2, "stats": 3}
    body = [(r["seq"], rank[r["type"]]) for r in recs[1:] if r["type"] in rank and "seq" in r]
    assert body == sorted(body)
    svc = lambda name, **kw: frozenset({("service", name), *kw.items()})
    assert m[("surgewatch_tcp_resets_total", svc(srv_name, direction="sent"))] == n
    assert m[("surgewatch_tcp_resets_total", svc(cli_name, direction="received"))] == n
    assert m[("surgewatch_tcp_resets_sent_by_kind_total", svc(srv_name, kind="abort"))] == n
