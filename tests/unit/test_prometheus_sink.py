"""collector.sinks.prometheus: counters from records, bounded labels, escaping, serving."""
import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.records import model
from collector.errors import BadInput
from collector.aggregate.slots import OTHER
from collector.sinks.prometheus import PrometheusSink


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def rate(service, writes, nbytes, paths=None, sent=None, received=None):
    paths = paths if paths is not None else [("/var/log/a.log", writes, nbytes)]
    return model.rate_record("h", 1.0, seq=0, interval=1.0, service=service, pids=[1],
                             comms=["x"], log_writes=writes, log_bytes=nbytes,
                             paths=[{"path": p, "writes": w, "bytes": b, "pids": [1]}
                                    for p, w, b in paths],
                             resets_sent=sent, resets_received=received)


def stats(**extra):
    rec = model.stats_record("h", 2.0, seq=0, interval=1.0, drain_ms=2.5, keys=25,
                             map_capacity=100, lost_events=2,
                             unresolved_writes=3, cpu_s=0.5, rss_bytes=4096)
    rec.update(extra)
    return rec


def samples(sink):
    """{(sample name, frozenset(labels)): value} parsed back from the exposition text."""
    out = {}
    for fam in text_string_to_metric_families(sink.render().decode("utf-8")):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(sink, name, **labels):
    return samples(sink).get((name, frozenset(labels.items())))


def test_counters_accumulate_exactly():
    sink = PrometheusSink(serve=False)
    sink.write_interval([rate("app", 10, 100, sent=1, received=2), stats()])
    sink.write_interval([rate("app", 5, 50, received=1), stats(lost_writes=7)])
    assert value(sink, "surgewatch_log_writes_total", service="app") == 15
    assert value(sink, "surgewatch_log_write_bytes_total", service="app") == 150
    assert value(sink, "surgewatch_log_path_writes_total", service="app",
                 path="/var/log/a.log") == 15
    assert value(sink, "surgewatch_tcp_resets_total", service="app", direction="sent") == 1
    assert value(sink, "surgewatch_tcp_resets_total", service="app",
                 direction="received") == 3
    assert value(sink, "surgewatch_intervals_total") == 2
    assert value(sink, "surgewatch_lost_writes_total") == 7
    assert value(sink, "surgewatch_map_evictions_total") is None   # evictions: always 0, no metric
    assert value(sink, "surgewatch_unresolved_writes_total") == 6
    assert value(sink, "surgewatch_cpu_seconds_total") == 1.0
    assert value(sink, "surgewatch_drain_seconds") == 0.0025
    assert value(sink, "surgewatch_map_fill_ratio") == 0.25
    assert value(sink, "surgewatch_rss_bytes") == 4096
    assert value(sink, "surgewatch_process_resident_memory_bytes") > 0


def test_hostile_names_are_escaped_and_read_back_unchanged():
    hostile = 'evil"svc\\name\nsecond line} x{y="1"'
    path = '/var/log/"quoted"\\back\nslash.log'
    sink = PrometheusSink(serve=False)
    sink.write_interval([rate(hostile, 3, 30, paths=[(path, 3, 30)]), stats()])
    text = sink.render().decode("utf-8")
    line = [l for l in text.splitlines() if l.startswith("surgewatch_log_writes_total{")]
    assert line == ['surgewatch_log_writes_total{service="evil\\"svc\\\\name\\nsecond line}'
                    ' x{y=\\"1\\""} 3.0']
    assert value(sink, "surgewatch_log_writes_total", service=hostile) == 3
    assert value(sink, "surgewatch_log_path_writes_total", service=hostile, path=path) == 3
    # undecodable bytes from the file system: a visible escape, never an encoding error
    sink.write_interval([rate("x\udcffy", 1, 1), stats()])
    assert value(sink, "surgewatch_log_writes_total", service="x\\xffy") == 1


def test_label_cardinality_is_bounded():
    sink = PrometheusSink(serve=False, max_services=3, max_paths_per_service=2)
    recs = [rate(f"svc{i}", 1, 10, paths=[(f"/var/log/{i}-{j}.log", 1, 10 // 4)
                                           for j in range(4)]) for i in range(10)]
    sink.write_interval(recs + [stats()])
    s = samples(sink)
    services = {dict(k[1])["service"] for k in s if k[0] == "surgewatch_log_writes_total"}
    assert services == {"svc0", "svc1", "svc2", OTHER}
    assert value(sink, "surgewatch_log_writes_total", service=OTHER) == 7
    paths = {dict(k[1])["path"] for k in s if k[0] == "surgewatch_log_path_writes_total"
             and dict(k[1])["service"] == "svc0"}
    assert paths == {"/var/log/0-0.log", "/var/log/0-1.log", OTHER}
    assert value(sink, "surgewatch_log_path_writes_total", service="svc0", path=OTHER) == 2
    # exact per-service totals whatever the folding of paths
    assert value(sink, "surgewatch_log_writes_total", service="svc1") == 1


def test_idle_labels_are_given_back():
    clock = Clock()
    sink = PrometheusSink(serve=False, max_services=1, label_idle_s=60, clock=clock)
    sink.write_interval([rate("old", 1, 1), stats()])
    clock.t = 30
    sink.write_interval([rate("new", 1, 1), stats()])
    assert value(sink, "surgewatch_log_writes_total", service=OTHER) == 1
    clock.t = 100                              # "old" idle 100 s, OTHER 70 s
    sink.write_interval([stats()])
    sink.write_interval([rate("new", 2, 2), stats()])
    assert value(sink, "surgewatch_log_writes_total", service="old") is None
    assert value(sink, "surgewatch_log_writes_total", service="new") == 2


def test_reset_kinds_and_idle_histogram():
    rec = rate("app", 0, 0, paths=[], sent=3, received=1)       # schema 1.10's details
    rec[model.RESETS_SENT_BY_KIND] = {"abort": 2, "reply": 1}
    rec[model.RESETS_IDLE_HIST] = [1, 0, 2] + [0] * 20 + [1]  # < 1 ms, [2, 4) ms, >= 2^22 ms

    sink = PrometheusSink(serve=False)
    sink.write_interval([rec])
    sink.write_interval([rec])
    assert value(sink, "surgewatch_tcp_resets_sent_by_kind_total", service="app",
                 kind="abort") == 4
    h = "surgewatch_tcp_reset_idle_seconds_bucket"
    assert value(sink, h, service="app", le="0.001") == 2
    assert value(sink, h, service="app", le="0.002") == 2
    assert value(sink, h, service="app", le="0.004") == 6
    assert value(sink, h, service="app", le="+Inf") == 8


def test_serves_metrics_over_loopback_and_refuses_a_taken_port():
    sink = PrometheusSink("127.0.0.1", 0)      # port 0: a free one
    try:
        sink.write_interval([rate("app", 4, 40), stats()])
        host, port = sink.address
        assert port != 2024
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as r:
            body = r.read().decode()
        assert 'surgewatch_log_writes_total{service="app"} 4.0' in body
        with pytest.raises(BadInput, match=f"127.0.0.1:{port}: .*outputs.prometheus"):
            PrometheusSink("127.0.0.1", port)
    finally:
        sink.close()
    with pytest.raises(OSError):               # closed: nothing listens any more
        socket.create_connection((host, port), timeout=2).close()


def loaded(service, writes, accepted, connected, tcp_bytes=None, sent=None, received=None):
    """A rate record with the load fields of schema 1.5 (tcp_bytes_out only when given)."""
    rec = rate(service, writes, writes * 10, sent=sent, received=received)
    rec.update(conns_accepted=accepted, conns_connected=connected)
    if tcp_bytes is not None:
        rec["tcp_bytes_out"] = tcp_bytes
    return rec


def test_load_counters_accumulate_exactly_and_only_for_services_with_load():
    sink = PrometheusSink(serve=False)
    sink.write_interval([loaded("web", 10, 7, 2, tcp_bytes=4096, sent=1, received=0),
                         loaded("db", 0, 3, 0), rate("cron", 4, 40), stats()])
    sink.write_interval([loaded("web", 5, 1, 1, tcp_bytes=1000), loaded("db", 0, 2, 5),
                         stats()])
    conns = "surgewatch_tcp_connections_total"
    assert value(sink, conns, service="web", direction="accepted") == 8
    assert value(sink, conns, service="web", direction="connected") == 3
    assert value(sink, "surgewatch_tcp_sent_bytes_total", service="web") == 5096
    # a load-only service (log_writes 0) has its log counters at 0 and its load
    assert value(sink, conns, service="db", direction="accepted") == 5
    assert value(sink, conns, service="db", direction="connected") == 5
    assert value(sink, "surgewatch_log_writes_total", service="db") == 0
    # no exact byte count (db) or no load at all (cron): no series, not a 0
    s = samples(sink)
    assert ("surgewatch_tcp_sent_bytes_total", frozenset({("service", "db")})) not in s
    assert {dict(k[1])["service"] for k in s if k[0] == conns} == {"web", "db"}
    assert sum(1 for k in s if k[0] in (conns, "surgewatch_tcp_sent_bytes_total")) == 5


def test_load_counters_fold_into_other_as_the_log_counters():
    sink = PrometheusSink(serve=False, max_services=2)
    sink.write_interval([loaded(f"svc{i}", 1, i, 1, tcp_bytes=100) for i in range(5)]
                        + [stats()])
    conns = "surgewatch_tcp_connections_total"
    s = samples(sink)
    assert {dict(k[1])["service"] for k in s if k[0] == conns} == {"svc0", "svc1", OTHER}
    assert value(sink, conns, service=OTHER, direction="accepted") == 2 + 3 + 4
    assert value(sink, conns, service=OTHER, direction="connected") == 3
    assert value(sink, "surgewatch_tcp_sent_bytes_total", service=OTHER) == 300
    assert value(sink, "surgewatch_log_writes_total", service=OTHER) == 3
