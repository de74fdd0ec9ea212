"""The live view's rows: rate now beside the window average, resets, idle bucket, alerts."""
import pytest

from collector.aggregate.resets import ServiceResets
from collector.aggregate.live_rows import SORTS, LiveModel, LiveRow, matches


def rec(service, writes=0, nbytes=0, sent=0, received=0):
    return {"service": service, "log_writes": writes, "log_bytes": nbytes,
            "resets_sent": sent, "resets_received": received}


def hist(**buckets):
    h = [0] * 24
    for b, n in buckets.items():
        h[int(b[1:])] = n
    return h


def incident():
    """A flood that stopped (app), a steady logger (nginx), a client whose resets begin."""
    m = LiveModel()
    m.add_interval([rec("app.service", 4000, 400_000), rec("nginx.service", 100, 8000)],
                   {}, 2.0)
    m.add_interval([rec("app.service", 200, 20_000), rec("nginx.service", 100, 8000),
                    rec("haproxy.service", received=20)],
                   {"haproxy.service": ServiceResets("haproxy.service", received=20,
                                                     idle_hist=hist(b16=18, b10=2))},
                   2.0, alerts=[("app.service", "log_writes_per_s"),
                                ("app.service", "log_bytes_per_s")])
    return m


APP = LiveRow("app.service", writes_now=100.0, writes_avg=1050.0, bytes_now=10_000.0,
              sent_now=0.0, received_now=0.0, sent=0, received=0, alerts=("writes", "bytes"))
NGINX = LiveRow("nginx.service", 50.0, 50.0, 4000.0, 0.0, 0.0, 0, 0)
HAPROXY = LiveRow("haproxy.service", 0.0, 0.0, 0.0, 0.0, 10.0, 0, 20,
                  idle="32.8s-1.09m", idle_share=0.9)


def test_rows_now_beside_average_sorted_by_now():
    assert incident().rows() == [APP, NGINX, HAPROXY]


def test_every_sort():
    m = incident()
    assert [r.service for r in m.rows("avg")] == ["app.service", "nginx.service",
                                                  "haproxy.service"]
    assert [r.service for r in m.rows("bytes")] == ["app.service", "nginx.service",
                                                    "haproxy.service"]
    assert [r.service for r in m.rows("resets")] == ["haproxy.service", "app.service",
                                                     "nginx.service"]
    assert [r.service for r in m.rows("name")] == ["app.service", "haproxy.service",
                                                   "nginx.service"]
    with pytest.raises(ValueError):
        m.rows("loudest")
    assert SORTS[0] == "now"


def test_a_flood_that_stopped_drops_below_a_steady_writer_now():
    m = LiveModel()
    m.add_interval([rec("flood", 6000), rec("steady", 50)], {}, 1.0)
    m.add_interval([rec("steady", 50)], {}, 1.0)           # flood gone: no record
    assert [(r.service, r.writes_now, r.writes_avg) for r in m.rows()] == [
        ("steady", 50.0, 50.0), ("flood", 0.0, 3000.0)]


def test_idle_bucket_of_the_recent_resets_only():
    m = LiveModel(recent=2)
    m.add_interval([rec("c", sent=5)], {"c": ServiceResets("c", sent=5, idle_hist=hist(b3=5))},
                   1.0)
    m.add_interval([rec("c", sent=1)], {"c": ServiceResets("c", sent=1, idle_hist=hist(b20=1))},
                   1.0)
    assert (m.rows()[0].idle, m.rows()[0].idle_share) == ("4ms-8ms", 5 / 6)
    m.add_interval([rec("c", sent=2)], {"c": ServiceResets("c", sent=2, idle_hist=hist(b20=2))},
                   1.0)                                   # the first interval has left
    row = m.rows()[0]
    assert (row.idle, row.idle_share, row.sent, row.sent_now) == ("8.74m-17.5m", 1.0, 8, 2.0)


def test_alerts_are_those_open_now():
    m = incident()
    m.add_interval([rec("app.service", 200)], {}, 2.0)     # no alert open any more
    assert [r.alerts for r in m.rows()] == [(), (), ()]


def test_filter_top_and_count():
    m = incident()
    assert [r.service for r in m.rows(pattern="NGI")] == ["nginx.service"]
    assert [r.service for r in m.rows(pattern="*.service", top=2)] == ["app.service",
                                                                     "nginx.service"]
    assert m.count("a") == 2 and m.count("") == 3 and m.rows(pattern="zzz") == []


def test_matches():
    assert matches("nginx.service", "")
    assert matches("nginx.service", "inx")
    assert matches("nginx.service", "nginx*")
    assert matches("nginx.service", "nginx")            # text: a substring
    assert not matches("nginx.service", "ngin?")       # a glob is on the whole name
    assert matches("web-1", "web-[0-9]")


def test_zero_interval_refused():
    with pytest.raises(ValueError):
        LiveModel().add_interval([], {}, 0.0)


def test_a_load_only_service_is_not_a_row():
    m = LiveModel()
    quiet = dict(rec("sshd.service"), conns_accepted=3, conns_connected=0)
    m.add_interval([rec("app.service", writes=10), quiet], {}, 1.0)
    assert [r.service for r in m.rows()] == ["app.service"]
    m.add_interval([rec("sshd.service", writes=2)], {}, 1.0)      # it logs: now it is one
    assert sorted(r.service for r in m.rows()) == ["app.service", "sshd.service"]
