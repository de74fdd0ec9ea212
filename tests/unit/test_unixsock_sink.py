"""collector.sinks.unixsock: live stream subscribers; a stuck one never slows the writer."""
import io
import os
import socket
import stat
import time

import pytest

from collector.records import model
from collector.errors import BadInput
from collector.sinks.unixsock import UnixSocketSink, subscribe
from collector.records.stream import read_records


def meta():
    return model.meta_record("h", 1.0, 1.0, {"logwrites": {"enabled": True}}, "6.1",
                             mode="run", argv=["surgewatch", "run"], version="0")


def stats(seq, pad=0):
    rec = model.stats_record("h", 2.0, seq=seq, interval=1.0, drain_ms=1.0, keys=0,
                             map_capacity=1, lost_events=0,
                             unresolved_writes=0, cpu_s=0.0, rss_bytes=1)
    if pad:
        rec["pad"] = "x" * pad
    return rec


def wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


def read_all(sock):
    sock.settimeout(5.0)
    return list(read_records(sock.makefile("rb", buffering=0), "sock"))


@pytest.fixture
def sockpath(tmp_path):
    return str(tmp_path / "run" / "stream.sock")


def test_mode_meta_first_and_live_records(sockpath):
    sink = UnixSocketSink(sockpath, mode=0o660, queue_records=100, host="h")
    try:
        assert stat.S_IMODE(os.stat(sockpath).st_mode) == 0o660
        sink.set_meta(meta())
        sink.write_interval([stats(0)])        # before anyone listens: nobody gets it
        a = subscribe(sockpath)
        assert wait_for(lambda: sink.subscribers() == 1)
        sink.write_interval([stats(1), stats(2)])
    finally:
        sink.close()
    assert not os.path.exists(sockpath)        # removed at close
    recs = read_all(a)                         # close hung up: the stream ends
    assert [r["type"] for r in recs] == ["meta", "stats", "stats"]
    assert [r["seq"] for r in recs[1:]] == [1, 2]


def test_stuck_subscriber_never_blocks_the_writer_and_is_told_what_it_missed(sockpath):
    sink = UnixSocketSink(sockpath, queue_records=50, host="h")
    try:
        sink.set_meta(meta())
        stuck = subscribe(sockpath)            # never reads until the end
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        assert wait_for(lambda: sink.subscribers() == 1)
        n, worst = 2000, 0.0
        for seq in range(n):                   # ~16 MB: far beyond every socket buffer
            t0 = time.perf_counter()
            sink.write_interval([stats(seq, pad=8000)])
            worst = max(worst, time.perf_counter() - t0)
        assert worst < 0.05, f"a write took {worst * 1000:.1f} ms"
        assert sink.dropped_total > 0
        dropped_before_catch_up = sink.dropped_total
        # the subscriber starts reading; once its queue has room the next record
        # comes with a notice of what it missed
        got = []
        stuck.settimeout(5.0)
        f = stuck.makefile("rb", buffering=0)
        it = read_records(f, "sock")
        (sub,) = sink._subs.values()
        while sub.queue:                       # read until its queue is empty
            got.append(next(it))
        sink.write_interval([stats(n)])
        while True:
            rec = next(it)
            got.append(rec)
            if rec.get("seq") == n:
                break
    finally:
        sink.close()
    stuck.close()
    assert got[0]["type"] == "meta"
    seqs = [r["seq"] for r in got if r["type"] == "stats"]
    assert seqs == sorted(seqs) and seqs[-1] == n
    notices = [i for i, r in enumerate(got) if r["type"] == "dropped"]
    assert notices
    for i in notices:                          # each right before the record after a gap
        assert got[i + 1]["type"] == "stats"
        assert got[i + 1]["seq"] - got[i - 1].get("seq", -1) - 1 == got[i]["dropped"]
    assert sum(got[i]["dropped"] for i in notices) == sink.dropped_total
    assert got[notices[-1]]["dropped_total"] == sink.dropped_total
    assert sink.dropped_total >= dropped_before_catch_up
    # every record was received or counted as dropped
    assert len(seqs) - 1 + sink.dropped_total == n


def test_other_subscribers_unaffected_by_a_stuck_one(sockpath):
    sink = UnixSocketSink(sockpath, queue_records=20, host="h")
    try:
        sink.set_meta(meta())
        stuck = subscribe(sockpath)
        good = subscribe(sockpath)
        good.settimeout(5.0)
        assert wait_for(lambda: sink.subscribers() == 2)
        it = read_records(good.makefile("rb", buffering=0), "good")
        got = [next(it)]
        for seq in range(300):
            sink.write_interval([stats(seq, pad=4000)])
            got.append(next(it))               # a reader keeping up gets everything
    finally:
        sink.close()
    stuck.close()
    good.close()
    assert [r["seq"] for r in got[1:]] == list(range(300))
    assert not any(r["type"] == "dropped" for r in got)
    assert sink.dropped_total > 0              # the stuck one's


def test_subscriber_hanging_up_is_forgotten(sockpath):
    sink = UnixSocketSink(sockpath, host="h")
    try:
        s = subscribe(sockpath)
        assert wait_for(lambda: sink.subscribers() == 1)
        s.close()
        assert wait_for(lambda: sink.subscribers() == 0)
        sink.write_interval([stats(0)])
    finally:
        sink.close()


def test_path_taken_by_a_file_is_refused_and_kept(sockpath):
    os.makedirs(os.path.dirname(sockpath))
    with open(sockpath, "w") as f:
        f.write("precious")
    with pytest.raises(BadInput, match="not a socket"):
        UnixSocketSink(sockpath)
    assert open(sockpath).read() == "precious"
    os.unlink(sockpath)
    os.mkdir(sockpath)
    with pytest.raises(BadInput, match="a directory"):
        UnixSocketSink(sockpath)


def test_stale_socket_replaced_live_one_refused(sockpath):
    os.makedirs(os.path.dirname(sockpath))
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(sockpath)
    dead.close()                               # a socket file nobody listens on
    sink = UnixSocketSink(sockpath)
    try:
        with pytest.raises(BadInput, match="another process"):
            UnixSocketSink(sockpath)
        assert os.path.exists(sockpath)        # the running one keeps its socket
    finally:
        sink.close()


def test_subscribe_to_nothing_is_a_clear_error(tmp_path):
    with pytest.raises(BadInput, match="is `surgewatch run` running"):
        subscribe(str(tmp_path / "none.sock"))


def test_tail_reads_the_socket(sockpath):
    import threading

    from collector.commands.tail import run_tail

    sink = UnixSocketSink(sockpath, host="h")
    sink.set_meta(meta())
    out = io.StringIO()
    code = {}
    t = threading.Thread(target=lambda: code.setdefault(
        "c", run_tail(sockpath, as_json=True, stdout=out, stderr=io.StringIO())))
    t.start()
    assert wait_for(lambda: sink.subscribers() == 1)
    sink.write_interval([stats(0), stats(1)])
    sink.close()
    t.join(5)
    import json
    assert [json.loads(l)["type"] for l in out.getvalue().splitlines()] == \
        ["meta", "stats", "stats"]
    assert code["c"] == 0
