"""The idle timeout named (issue 25), with real parts: HAProxy with `timeout client` and
`timeout server` 3.5 s and `option nolinger` resets a frontend's pooled idle connections;
`surgewatch snapshot --resets --json` names the timeout in one line and counts the
connections about to be reset.

One run (module fixture), about 12 s of snapshot after its probes load (every time here is at
SURGEWATCH_TEST_TIME_SCALE 1; under emulation all are scaled by a power of two):
- a pool of 4 connections, used once and left idle 4.1 s, twice: the balancer resets all
  of them after 3.5 s idle = 8 resets received by the frontend from the balancer's
  address:8080, and 8 by nginx from the balancer's other side (a new port each time);
- then 3 connections used once and left idle, timed so that the snapshot's window ends
  when they have been idle 2.3 s: longer than 2.048 s (the lower bound of the bucket
  [2.048 s, 4.096 s) that holds 3.5 s), shorter than the timeout. They are still open
  when the snapshot takes its connection inventory, and are the ones to be reset next.

Expected, exactly: one verdict for the frontend (peer balancer:8080, 8 of 8 resets in one
bucket, a timeout named within one log2 bucket of 3.5 s) with 3 connections at risk; one
for nginx (peer balancer-address:*, 8 of 8) with 3 at risk; none for HAProxy.
"""
import json
import math
import os
import re
import subprocess
import sys
import uuid

import pytest

from collector.aggregate.idle_hist import bucket_of
from tests.e2e.incidents import SURGEWATCH, _meta_written, _wait_for, read_stream
from tests.e2e.topology import HERE, LB_PORT, Topology, missing_tools, read_events
from tests.owncgroup import TIME_SCALE

pytestmark = pytest.mark.e2e

# Every time below is scaled by a power of two, so that the buckets scale with it: under
# QEMU's software CPU (TIME_SCALE 4) the inventory may follow the window's end by seconds,
# and the kept connections must stay inside [bucket low, timeout) until it runs.
SCALE = 2 ** round(math.log2(max(1.0, TIME_SCALE)))
TIMEOUT_S = 3.5 * SCALE           # HAProxy's timeout client / timeout server
POOL, ROUNDS = 4, 2               # reset twice: 8 resets
HOLD_S = TIMEOUT_S + 0.6 * SCALE  # idle time of each round before the client closes the pool
KEEP = 3                          # left open and idle at the end
KEEP_IDLE_AT_END_S = 2.3 * SCALE  # their idle time when the snapshot's window ends
DURATION_S = 12.0 * SCALE
EXPECTED_RESETS = POOL * ROUNDS
BUCKET = bucket_of(TIMEOUT_S * 1000, 24)        # 12: [2.048 s, 4.096 s)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    missing = missing_tools()
    if missing:
        say = pytest.fail if os.environ.get("SURGEWATCH_REQUIRE_PRIVILEGED") else pytest.skip
        say(f"missing {', '.join(missing)}: run `make setup`")
    workdir = tmp_path_factory.mktemp("idle-timeout")
    tag = uuid.uuid4().hex[:6]
    topo = Topology(workdir, idle_timeout_s=TIMEOUT_S, tag=tag, unit_suffix=f"-{tag}")
    try:
        topo.up()
        topo.start_backend()
        topo.start_lb()
        yield _run(topo, str(workdir))
    finally:
        topo.down()


def _run(topo, workdir):
    class R:
        pass

    r = R()
    r.topo = topo
    r.fe, r.lb, r.be = (topo.units[k] for k in ("frontend", "haproxy", "nginx"))
    r.stream = os.path.join(workdir, "snapshot.msgpack")
    r.events_path = os.path.join(workdir, "client-events.jsonl")
    snap = subprocess.Popen([SURGEWATCH, "snapshot", "--resets", "--json", "--interval", "1",
                             "--duration", str(DURATION_S), "--msgpack", r.stream],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = None
    try:
        _wait_for(lambda: _meta_written(r.stream), 120, "the snapshot's probes", snap)
        # the window runs DURATION_S from its meta record (a few ms after its start, by
        # the snapshot's own clock): the kept connections go idle so that they have been
        # idle KEEP_IDLE_AT_END_S when it ends. The inventory follows the window's last
        # drain (0-0.5 s later here), so the aim is near the bucket's lower bound
        r.window_end = read_stream(r.stream)[0]["ts"] + DURATION_S
        keep_at = r.window_end - KEEP_IDLE_AT_END_S
        client = topo.spawn("frontend", [sys.executable, os.path.join(HERE, "idle_pool_client.py"),
                                         f"{topo.lb_fe_addr}:{LB_PORT}", str(POOL), str(ROUNDS),
                                         str(HOLD_S), str(KEEP), str(keep_at), r.events_path],
                            unit=r.fe)
        out, err = snap.communicate(timeout=DURATION_S + 120)
        r.snapshot_rc, r.snapshot_err = snap.returncode, err
        with open(os.path.join(workdir, "snapshot.json"), "w") as f:     # to look at
            f.write(out)
        r.doc = json.loads(out) if out else None
        r.client_alive = client.poll() is None       # idle in its last sleep, not failed
    finally:
        if snap.poll() is None:
            snap.kill()
            snap.wait()
        if client is not None:
            topo.stop(client)
    r.events = read_events(r.events_path)
    r.records = read_stream(r.stream)
    return r


def _service(run, name):
    found = [s for s in run.doc["resets"]["services"] if s["service"] == name]
    assert found, [s["service"] for s in run.doc["resets"]["services"]]
    return found[0]


def _line_re(peer, at_risk):
    return re.compile(
        rf"resets from {re.escape(peer)} after ~(?P<t>[0-9.]+) s idle: an idle timeout near "
        rf"(?P=t) s \({EXPECTED_RESETS} of {EXPECTED_RESETS} in [0-9.]+s-[0-9.]+s\); "
        rf"{at_risk} open connections to it idle >= (?P<low>[0-9.]+) s now, about to be reset")


def _named_within_one_bucket(v):
    """The verdict's bucket and the timeout its line names are both within one log2 bucket
    of the configured timeout's."""
    m = re.search(r"an idle timeout near ([0-9.]+) s", v["line"])
    named_ms = float(m.group(1)) * 1000
    return abs(v["bucket"] - BUCKET) <= 1 and abs(bucket_of(named_ms, 24) - BUCKET) <= 1


def test_the_ground_truth_ran_as_planned(run):
    assert run.snapshot_rc == 0, run.snapshot_err
    assert run.client_alive, run.events
    rounds = [e for e in run.events if e["kind"] == "idle"]
    (kept,) = [e for e in run.events if e["kind"] == "kept"]
    assert [e["round"] for e in rounds] == list(range(ROUNDS))
    assert all(len(e["lports"]) == POOL for e in rounds) and len(kept["lports"]) == KEEP
    # the kept connections went idle KEEP_IDLE_AT_END_S before the window's end
    assert abs(run.window_end - kept["ts"] - KEEP_IDLE_AT_END_S) < 0.3 * SCALE, kept


def test_the_frontend_is_told_the_timeout_and_the_connections_about_to_go(run):
    fe = _service(run, run.fe)
    assert (fe["resets_received"], fe["resets_sent"]) == (EXPECTED_RESETS, 0)
    peer = f"{run.topo.lb_fe_addr}:{LB_PORT}"
    (v,) = fe["idle_timeouts"]
    assert (v["peer"], v["resets"], v["known"], v["unknown"]) == \
        (peer, EXPECTED_RESETS, EXPECTED_RESETS, 0)
    assert _named_within_one_bucket(v), v
    assert _line_re(peer, KEEP).fullmatch(v["line"]), v["line"]
    # the at-risk count is exactly the connections the client left open
    assert v["at_risk"] == KEEP
    # ... which are these: the kept ones, to the balancer, idle past the bucket's lower
    # bound and not yet at the timeout (the inventory's own rows)
    (kept,) = [e for e in run.events if e["kind"] == "kept"]
    rows = [x for x in run.doc["resets"]["connections"].get(run.fe, [])
            if x["remote"] == peer and x["idle_s"] is not None]
    assert sorted(int(x["local"].rsplit(":", 1)[1]) for x in rows) == sorted(kept["lports"])
    assert all(v["lower_ms"] <= x["idle_s"] * 1000 < TIMEOUT_S * 1000 for x in rows), rows
    # the verdict's resets are the stream's: received from the balancer after ~3.5 s idle
    recs = [x for x in run.records if x["type"] == "reset" and x["service"] == run.fe]
    assert len(recs) == EXPECTED_RESETS
    assert {(x["direction"], x["remote"], x["remote_port"]) for x in recs} == \
        {("received", run.topo.lb_fe_addr, LB_PORT)}
    in_bucket = [v["lower_ms"] <= x["idle_ms"] < (v["upper_ms"] or 2 ** 40) for x in recs]
    assert all(in_bucket), [x["idle_ms"] for x in recs]


def test_the_backend_is_told_too_its_peer_named_by_address(run):
    be = _service(run, run.be)
    assert be["resets_received"] == EXPECTED_RESETS
    peer = f"{run.topo.lb_be_addr}:*"       # the balancer's side: a new port each time
    (v,) = be["idle_timeouts"]
    assert (v["peer"], v["resets"], v["known"]) == (peer, EXPECTED_RESETS, EXPECTED_RESETS)
    assert _named_within_one_bucket(v), v
    assert _line_re(peer, KEEP).fullmatch(v["line"]), v["line"]
    assert v["at_risk"] == KEEP


def test_the_balancer_which_only_sent_gets_no_verdict(run):
    lb = _service(run, run.lb)
    assert lb["resets_sent"] == 2 * EXPECTED_RESETS and lb["resets_received"] == 0
    assert lb["idle_timeouts"] == []
