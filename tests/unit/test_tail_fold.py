"""`surgewatch tail` in a terminal folds a service's resets of one interval into one line
(collector/commands/tail_fold.py), from a segment directory, while following one, and
from the stream socket; -v shows each reset, JSON is never folded."""
import io
import json
import threading
import types

from collector.commands.tail import run_tail
from collector.records import model
from collector.views.recordlines import format_reset_fold
from collector.sinks.segments import SegmentStore
from collector.sinks.unixsock import UnixSocketSink
from tests.unit.test_tail import TTY, meta, stats
from tests.unit.test_unixsock_sink import wait_for

PEERS = [("10.0.0.5", 443)] * 25 + [("10.0.0.6", 443)] * 10 + \
    [("10.0.1.7", 40000 + i) for i in range(5)]          # a backend, another, a client


def resets(seq, service="storm.service", peers=PEERS):
    out = []
    for i, (addr, port) in enumerate(peers):
        ev = types.SimpleNamespace(comm="storm", direction="received" if i % 4 else "sent",
                                   kind="abort", state="ESTABLISHED", reason=None, family=2,
                                   laddr="10.0.0.1", lport=50000 + i, raddr=addr, rport=port,
                                   idle_ms=60000.0 + i, owner_source="connect")
        out.append(model.reset_record("web1", 1000.0 + seq, seq, service, 42, ev))
    return out


def interval(seq, alert=False, peers=PEERS):
    rate = model.rate_record("web1", 1000.0 + seq, seq=seq, interval=1.0,
                             service="storm.service", pids=[], comms=[], log_writes=0,
                             log_bytes=0, paths=[], resets_sent=10, resets_received=30)
    recs = [rate] + resets(seq, peers=peers)
    if alert:
        recs.append(model.alert_record(
            "web1", 1000.0 + seq, seq=seq, state="open", service="storm.service",
            signal="resets_received_per_s", rate=30.0, baseline=1.0, spread=0.5, ratio=30.0,
            threshold=5.0, reason="above_baseline", started=1000.0 + seq, peak=30.0,
            intervals=0, top={"pids": [42], "comms": ["storm"], "peers": [], "idle": []}))
    return recs + [stats(seq, 1000.0 + seq)]


FOLD = ("#{seq:<6} resets storm.service  40 in 1s (sent 10, received 30)  peers "
        "10.0.0.5:443 x25, 10.0.0.6:443 x10, 10.0.1.7 (5 ports) x5  idle 1m")


def store(path, n=30, alert_at=25):
    s = SegmentStore(path)
    s.set_meta(meta())
    s.write_interval([s._meta])
    for seq in range(n):
        s.write_interval(interval(seq, alert=seq == alert_at))
    return s


def tail(source, **kw):
    out = kw.pop("stdout", TTY())
    code = run_tail(source, stdout=out, stderr=io.StringIO(), **kw)
    return code, out.getvalue().splitlines()


def test_a_reset_storm_folds_to_one_line_per_interval_and_the_alert_stays_in_view(tmp_path):
    store(tmp_path / "seg").close()
    code, lines = tail(tmp_path / "seg")
    assert code == 0 and len(lines) == 1 + 30 * 2 + 1            # meta, rate + fold, alert
    folds = [l for l in lines if " resets storm.service " in l]
    assert [l.split(" ", 3)[3] for l in folds] == [FOLD.format(seq=s) for s in range(30)]
    alert = next(i for i, l in enumerate(lines) if "ALERT" in l)
    assert alert >= len(lines) - 20
    code, lines = tail(tmp_path / "seg", verbose=True)            # -v: every reset
    assert len(lines) == 1 + 30 * 41 + 1
    assert sum(" reset  " in l for l in lines) == 30 * 40
    assert not any(" resets storm" in l for l in lines)
    assert next(i for i, l in enumerate(lines) if "ALERT" in l) < len(lines) - 20


def test_json_is_one_record_per_line_never_folded(tmp_path):
    store(tmp_path / "seg", n=2).close()
    code, lines = tail(tmp_path / "seg", stdout=io.StringIO())   # piped: JSON
    assert [json.loads(l)["type"] for l in lines].count("reset") == 2 * 40


def test_filters_still_end_an_interval_and_a_single_reset_keeps_its_line(tmp_path):
    s = SegmentStore(tmp_path / "seg")
    s.set_meta(meta())
    s.write_interval([s._meta])
    s.write_interval(interval(0) + interval(1, peers=PEERS[:1]))
    s.close()
    code, lines = tail(tmp_path / "seg", types=frozenset({"reset"}))
    assert len(lines) == 2
    assert lines[0].split(" ", 3)[3] == FOLD.format(seq=0)       # the rate's interval length
    assert " reset  sent abort  storm.service  pid 42 (storm)  peer 10.0.0.5:443 " in lines[1]
    code, lines = tail(tmp_path / "seg", services=("other*",))
    assert lines == []


def test_two_services_of_one_interval_get_a_line_each_in_order():
    both = resets(3, "b.service", PEERS[:2]) + resets(3, "a.service", PEERS[-3:])
    lines = [format_reset_fold([r for r in both if r["service"] == s]) for s in
             ("b.service", "a.service")]
    assert lines[0].endswith("#3      resets b.service  2 (sent 1, received 1)  peers "
                             "10.0.0.5:443 x2  idle 1m")
    assert lines[1].endswith("#3      resets a.service  3 (sent 1, received 2)  peers "
                             "10.0.1.7 (3 ports) x3  idle 1m")


def test_follow_folds_each_new_interval(tmp_path):
    s = store(tmp_path / "seg", n=2)
    polls = {"n": 0}

    def should_stop():
        polls["n"] += 1
        if polls["n"] <= 3:
            s.write_interval(interval(100 + polls["n"], alert=polls["n"] == 3))
        return polls["n"] > 5

    code, lines = tail(tmp_path / "seg", follow=True, poll_s=0, should_stop=should_stop)
    s.close()
    folds = [l.split(" ", 3)[3] for l in lines if " resets storm" in l]
    assert folds == [FOLD.format(seq=s) for s in (101, 102, 103)]
    assert "ALERT" in lines[-1]


def test_the_socket_stream_folds_too(tmp_path):
    path = str(tmp_path / "s.sock")
    sink = UnixSocketSink(path, host="web1")
    sink.set_meta(meta())
    out, code = TTY(), {}
    t = threading.Thread(target=lambda: code.setdefault("c", run_tail(
        path, stdout=out, stderr=io.StringIO())))
    t.start()
    assert wait_for(lambda: sink.subscribers() == 1)
    sink.write_interval(interval(7, alert=True))
    sink.close()
    t.join(5)
    lines = out.getvalue().splitlines()
    assert code["c"] == 0 and len(lines) == 4                    # meta, rate, fold, alert
    assert lines[2].split(" ", 3)[3] == FOLD.format(seq=7) and "ALERT" in lines[3]
