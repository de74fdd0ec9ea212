import pytest

from collector.aggregate.logrates import OTHERS, Window, aggregate_interval
from collector.records.model import LogWrite, rate_record

APP_LOG = "/var/log/app/app.log"
WORKER_LOG = "/var/log/app/worker.log"
ACCESS = "/var/log/nginx/access.log"


def writes_one_interval():
    return [
        # app.service: 3 pids on 2 paths; pid 101 has two fds on the same file.
        LogWrite(101, "app", "app.service", APP_LOG, 30, 3000),
        LogWrite(101, "app", "app.service", APP_LOG, 5, 500),
        LogWrite(102, "app", "app.service", APP_LOG, 15, 1500),
        LogWrite(103, "app-worker", "app.service", WORKER_LOG, 10, 400),
        LogWrite(7, "nginx", "nginx.service", ACCESS, 40, 8000),
        LogWrite(9, "idle", "idle.service", "/var/log/idle.log", 0, 0),
    ]


def test_aggregate_interval_exact():
    bodies = aggregate_interval(writes_one_interval(), seq=3, interval_s=2.0)
    assert bodies == [
        {
            "seq": 3, "interval": 2.0, "service": "app.service",
            "pids": [101, 102, 103], "comms": ["app", "app-worker"],
            "log_writes": 60, "log_bytes": 5400,
            "log_writes_per_s": 30.0, "log_bytes_per_s": 2700.0,
            "paths": [
                {"path": APP_LOG, "writes": 50, "bytes": 5000, "pids": [101, 102]},
                {"path": WORKER_LOG, "writes": 10, "bytes": 400, "pids": [103]},
            ],
        },
        {
            "seq": 3, "interval": 2.0, "service": "nginx.service",
            "pids": [7], "comms": ["nginx"],
            "log_writes": 40, "log_bytes": 8000,
            "log_writes_per_s": 20.0, "log_bytes_per_s": 4000.0,
            "paths": [{"path": ACCESS, "writes": 40, "bytes": 8000, "pids": [7]}],
        },
    ]


def test_aggregate_bodies_build_rate_records():
    body = aggregate_interval(writes_one_interval(), 0, 2.0)[0]
    rec = rate_record("web1", 10.0, **body)
    assert {k: rec[k] for k in body} == body
    assert rec["type"] == "rate" and rec["host"] == "web1"


def test_aggregate_ties_sorted_by_name():
    ws = [LogWrite(2, "b", "b.service", "/b2", 5, 1), LogWrite(2, "b", "b.service", "/b1", 5, 1),
          LogWrite(1, "a", "a.service", "/a", 10, 1)]
    bodies = aggregate_interval(ws, 0, 1.0)
    assert [b["service"] for b in bodies] == ["a.service", "b.service"]
    assert [p["path"] for p in bodies[1]["paths"]] == ["/b1", "/b2"]


def test_aggregate_empty_and_bad_interval():
    assert aggregate_interval([], 0, 1.0) == []
    with pytest.raises(ValueError):
        aggregate_interval([], 0, 0.0)


def make_window():
    w = Window()
    w.add_writes(writes_one_interval(), 0, 2.0)
    w.add_interval([], 1.0)           # a quiet interval still counts toward the duration
    w.add_writes([LogWrite(104, "app", "app.service", APP_LOG, 20, 2000),
                  LogWrite(7, "nginx", "nginx.service", ACCESS, 10, 100),
                  LogWrite(55, "cron", "cron.service", "/var/log/cron.log", 10, 10)], 2, 2.0)
    return w


def test_window_totals_and_rates():
    w = make_window()
    assert w.duration_s == 5.0 and w.intervals == 3
    assert w.total_writes == 140 and w.total_bytes == 15510
    app, nginx, cron = w.services()
    assert (app.service, app.writes, app.bytes) == ("app.service", 80, 7400)
    assert app.pids == [101, 102, 103, 104] and app.comms == ["app", "app-worker"]
    assert app.writes_per_s == 80 / 5.0 and app.bytes_per_s == 7400 / 5.0
    assert [(p.path, p.writes, p.bytes, p.pids) for p in app.paths] == [
        (APP_LOG, 70, 7000, [101, 102, 104]), (WORKER_LOG, 10, 400, [103])]
    assert app.paths[0].writes_per_s == 14.0
    assert (nginx.service, nginx.writes, nginx.bytes_per_s) == ("nginx.service", 50, 8100 / 5.0)
    assert (cron.service, cron.writes) == ("cron.service", 10)
    assert app.share == 80 / 140 and nginx.share == 50 / 140
    assert sum(s.share for s in w.services()) == pytest.approx(1.0)


def test_window_rows_sorted_and_shares_sum_to_one():
    rows = make_window().rows()
    assert [(r.service, r.path, r.writes) for r in rows] == [
        ("app.service", APP_LOG, 70),
        ("nginx.service", ACCESS, 50),
        ("app.service", WORKER_LOG, 10),
        ("cron.service", "/var/log/cron.log", 10),
    ]
    assert sum(r.share for r in rows) == pytest.approx(1.0)


def test_top_folds_rest_into_others():
    w = make_window()
    rows = w.rows(top=2)
    assert [r.service for r in rows] == ["app.service", "nginx.service", OTHERS]
    others = rows[-1]
    assert (others.writes, others.bytes, others.pids, others.folded) == (20, 410, [55, 103], 2)
    assert others.writes_per_s == 4.0
    assert sum(r.share for r in rows) == pytest.approx(1.0)

    svcs = w.services(top=1)
    assert [s.service for s in svcs] == ["app.service", OTHERS]
    assert (svcs[1].writes, svcs[1].folded, svcs[1].comms) == (60, 2, ["cron", "nginx"])
    assert sum(s.share for s in svcs) == pytest.approx(1.0)
    assert len(w.rows(top=10)) == 4          # nothing to fold: no "(others)" row


def test_empty_window():
    w = Window()
    assert w.rows() == [] and w.services() == [] and w.stats() is None
    w.add_interval([], 1.0)
    assert w.rows() == [] and w.total_writes == 0


def test_window_accepts_full_rate_records():
    w = Window()
    for body in aggregate_interval(writes_one_interval(), 0, 2.0):
        w.add_interval([rate_record("h", 1.0, **body)], 1.0)
    assert w.total_writes == 100


def test_window_stats():
    w = Window()
    base = dict(seq=0, interval=2.0, map_capacity=10240, evictions=1, lost_events=0,
                unresolved_writes=2, rss_bytes=100)
    w.add_interval([], 2.0, stats=dict(base, drain_ms=1.0, keys=10, cpu_s=0.02))
    w.add_interval([], 2.0, stats=dict(base, drain_ms=3.0, keys=30, cpu_s=0.02, rss_bytes=300,
                                       lost_writes=5, note="x", flag=True))
    s = w.stats()
    assert s["intervals"] == 2 and s["evictions"] == 2 and s["unresolved_writes"] == 4
    assert s["drain_ms_max"] == 3.0 and s["drain_ms_mean"] == 2.0 and s["keys_max"] == 30
    assert s["rss_bytes_max"] == 300 and s["cpu_s"] == pytest.approx(0.04)
    assert s["cpu_percent"] == pytest.approx(1.0)
    assert s["lost_writes"] == 5 and "note" not in s and "flag" not in s   # extra counters summed


# -- rate_bodies: bounded paths (schema 1.3) ------------------------------------------
def _acc(service, path, writes, nbytes, pid, comm="app", extra=None):
    return [None, writes, nbytes, (pid, comm), extra, service, path]


def test_rate_bodies_keep_top_paths_and_fold_the_rest_exactly():
    from collector.aggregate.logrates import OTHER_PATH, rate_bodies

    accs = [_acc("s", f"/l/{i:03d}.log", 100 - i, 10 * (100 - i), 1000 + i % 7)
            for i in range(100)]
    accs.append(_acc("s", "/l/shared.log", 3, 30, 1, extra={(2, "other"), (1, "app")}))
    (body,) = rate_bodies(accs, 4, 2.0, max_paths=5)
    paths = body["paths"]
    assert [p["path"] for p in paths] == [f"/l/{i:03d}.log" for i in range(5)] + [OTHER_PATH]
    other = paths[-1]
    assert other["folded"] == 96
    assert sum(p["writes"] for p in paths) == body["log_writes"] == sum(a[1] for a in accs)
    assert sum(p["bytes"] for p in paths) == body["log_bytes"] == sum(a[2] for a in accs)
    assert other["pids"] == [1, 2] + sorted({1000 + i % 7 for i in range(5, 100)})
    assert body["pids"] == [1, 2] + list(range(1000, 1007))
    assert body["comms"] == ["app", "other"]
    assert body["log_writes_per_s"] == body["log_writes"] / 2.0


def test_rate_bodies_ties_at_the_cut_go_by_path():
    from collector.aggregate.logrates import rate_bodies

    accs = [_acc("s", p, 5, 5, 1) for p in ("/d", "/b", "/e", "/a", "/c")]
    accs.append(_acc("s", "/z", 9, 9, 1))
    (body,) = rate_bodies(accs, 0, 1.0, max_paths=3)
    assert [p["path"] for p in body["paths"]] == ["/z", "/a", "/b", "(other)"]
    assert body["paths"][-1]["writes"] == 15 and body["paths"][-1]["folded"] == 3


def test_rate_bodies_unbounded_equal_aggregate_interval():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from collector.aggregate.logrates import rate_bodies
    from collector.records.model import LogWrite

    writes_st = st.lists(st.tuples(st.integers(1, 4), st.sampled_from("ab"),
                                   st.sampled_from(["s1", "s2"]),
                                   st.sampled_from(["/x", "/y", "/z"]),
                                   st.integers(1, 50), st.integers(1, 500)), max_size=30)

    @settings(max_examples=200, deadline=None)
    @given(writes_st, st.sampled_from([0, 1, 2, 100]))
    def check(rows, max_paths):
        writes = [LogWrite(*r) for r in rows]
        accs = {}
        for w in writes:
            a = accs.get((w.service, w.path))
            if a is None:
                accs[(w.service, w.path)] = _acc(w.service, w.path, w.writes, w.bytes, w.pid,
                                                 w.comm)
            else:
                a[1] += w.writes
                a[2] += w.bytes
                if a[3] != (w.pid, w.comm):
                    a[4] = (a[4] or set()) | {(w.pid, w.comm)}
        got = rate_bodies(list(accs.values()), 1, 1.0, max_paths=max_paths)
        want = aggregate_interval(writes, 1, 1.0)
        if max_paths in (0, 100):
            assert got == want
        else:
            assert [(b["service"], b["log_writes"], b["log_bytes"], b["pids"], b["comms"])
                    for b in got] == \
                [(b["service"], b["log_writes"], b["log_bytes"], b["pids"], b["comms"])
                 for b in want]
            for g, w in zip(got, want):
                n = len(w["paths"])
                assert g["paths"][:max_paths] == w["paths"][:max_paths]
                if n > max_paths:
                    rest = w["paths"][max_paths:]
                    assert g["paths"][-1] == {
                        "path": "(other)", "writes": sum(p["writes"] for p in rest),
                        "bytes": sum(p["bytes"] for p in rest),
                        "pids": sorted({q for p in rest for q in p["pids"]}),
                        "folded": len(rest)}

    check()
