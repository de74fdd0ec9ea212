"""Incident 2 of DESIGN.md: connection resets from "too little load".

One run (module fixture): a frontend service keeps a pool of 4 keep-alive connections
through HAProxy (TCP mode, 3 s idle timeout, `option nolinger`: it resets idle connections,
as cloud balancers do) to nginx. First 4 bursts 1.5 s apart (busy: no connection idles
for 3 s), then 3 bursts 5 s apart (too little load: the balancer resets the whole pool
in each gap; the frontend, which does not retry, fails the 4 requests of the next burst).
`surgewatch snapshot --resets` watches the whole run; tcpdump captures in the frontend's
namespace; the open-connection inventory is taken 2.4 s into the last gap.

Expected, exactly: 2 long gaps end in a reset of the pool before the client ends =
8 resets received by frontend.service, 8 sent by haproxy.service to it (and 8 to nginx).
"""
import pytest

from tests.e2e.incidents import interval_windows, resets_incident
from tests.e2e.topology import LB_PORT, pcap_resets

pytestmark = pytest.mark.e2e

POOL = 4
SHORT = (4, 1.5)          # bursts, gap s: gaps shorter than the 3 s timeout
LONG = (3, 5.0)           # gaps longer than it
THRESHOLD_S = 2.0         # inventory: at risk when idle >= 2 s (the timeout is 3 s)
# the pool is reset after the 1st and the 3rd long burst (the 2nd fails and empties it)
EXPECTED_RESETS = 2 * POOL
IDLE_BUCKET = 12          # [2.048 s, 4.096 s): contains the 3 s timeout (docs/probe-resets.md)


@pytest.fixture(scope="module")
def run(topology):
    r = resets_incident(topology, topology.workdir, pool=POOL, short=SHORT, long=LONG,
                        threshold_s=THRESHOLD_S)
    assert r.snapshot_rc == 0, r.snapshot_err
    assert r.client_rc == 0
    r.topo = topology
    r.fe, r.lb, r.be = (topology.units[k] for k in ("frontend", "haproxy", "nginx"))
    return r


def _service(doc, name):
    found = [s for s in doc["resets"]["services"] if s["service"] == name]
    return found[0] if found else None


def _ours(run, rec):
    return any(run.topo.owns_address(rec[k]) for k in ("local", "remote"))


def _frontend_ports(events):
    return {e["lport"] for e in events if e["kind"] == "connect"}


def test_idle_resets_attributed_to_the_frontend(run):
    doc = run.doc
    assert run.topo.idle_timeout_s == 3
    fe = _service(doc, run.fe)
    assert fe is not None, doc["resets"]["services"]
    # the frontend receives them (it owns the sockets), it sends none
    assert (fe["resets_received"], fe["resets_sent"]) == (EXPECTED_RESETS, 0)
    assert fe["comms"] == ["python3"] or all(c.startswith("python") for c in fe["comms"])
    # HAProxy sends them, to both sides; nginx receives its half; nothing is left to the
    # kernel or to an unknown owner
    lb = _service(doc, run.lb)
    assert lb is not None and lb["resets_sent"] == 2 * EXPECTED_RESETS
    assert lb["resets_received"] == 0
    be = _service(doc, run.be)
    assert be is not None and be["resets_received"] == EXPECTED_RESETS
    assert doc["resets"]["events_lost"] == 0
    # every reset on the topology's addresses has one of its three services as owner:
    # none left to "kernel (no socket)" or "unknown (socket predates probe)" (the host's
    # other resets, e.g. other tests on loopback, are not looked at)
    ours = [x for x in run.records if x["type"] == "reset" and _ours(run, x)]
    assert {x["service"] for x in ours} == {run.fe, run.lb, run.be}
    suppressed = sum(x.get("reset_records_suppressed", 0) for x in run.records
                     if x["type"] == "stats")
    if suppressed == 0:       # a busy host can crowd them out of the 100 records/interval
        assert len(ours) == 4 * EXPECTED_RESETS
    # idle before reset: every one in the bucket holding the 3 s timeout
    hist = fe["idle_hist"]
    assert hist[IDLE_BUCKET] == EXPECTED_RESETS and sum(hist) == EXPECTED_RESETS, hist
    assert max(range(len(hist)), key=hist.__getitem__) == IDLE_BUCKET
    assert fe["idle_unknown"] == 0
    # each reset, as a stream record: received from the balancer's address. HAProxy 2.6
    # sends a FIN and, microseconds later, the RST (shutdown, then close with SO_LINGER 0),
    # so the frontend's socket is usually in CLOSE_WAIT when the reset arrives
    recs = [x for x in run.records if x["type"] == "reset" and x["service"] == run.fe]
    assert len(recs) == EXPECTED_RESETS
    assert {(x["direction"], x["remote"], x["remote_port"]) for x in recs} == \
        {("received", run.topo.lb_fe_addr, LB_PORT)}
    assert {x["state"] for x in recs} <= {"ESTABLISHED", "CLOSE_WAIT"}
    assert {x["local_port"] for x in recs} <= _frontend_ports(run.events)
    assert all(2048 <= x["idle_ms"] < 4096 for x in recs), [x["idle_ms"] for x in recs]


def test_capture_counts_the_same_resets(run):
    rsts = pcap_resets(run.pcap)
    assert len(rsts) == EXPECTED_RESETS, rsts
    # all from the balancer to the frontend's pooled connections, none the other way
    assert {(s, sp, d) for s, sp, d, _ in rsts} == {(run.topo.lb_fe_addr, LB_PORT, run.topo.fe_addr)}
    recs = [x for x in run.records if x["type"] == "reset" and x["service"] == run.fe]
    assert sorted(dp for *_, dp in rsts) == sorted(x["local_port"] for x in recs)


def test_inventory_flags_the_pool_before_the_balancer_kills_it(run):
    inv = run.inventory
    assert THRESHOLD_S <= run.inventory_idle_s < run.topo.idle_timeout_s
    rows = inv.get(run.fe)
    assert rows, sorted(inv)
    # the frontend's sockets live in its own network namespace: seen through sock_diag
    # in that namespace, owned by the frontend process
    pooled = [x for x in rows if x["remote"] == f"{run.topo.lb_fe_addr}:{LB_PORT}"]
    assert len(pooled) == POOL, rows
    assert all(x["at_risk"] and THRESHOLD_S <= x["idle_s"] < run.topo.idle_timeout_s
               for x in pooled), pooled
    # ... and those very connections are the ones the balancer reset afterwards
    at_risk_ports = {int(x["local"].rsplit(":", 1)[1]) for x in pooled}
    later = [x for x in run.records if x["type"] == "reset" and x["service"] == run.fe
             and x["ts"] >= run.inventory_ts]
    assert {x["local_port"] for x in later} == at_risk_ports
    # the balancer's own connections idle just as long: flagged under haproxy.service
    lb_rows = inv.get(run.lb, [])
    assert sum(1 for x in lb_rows if x["at_risk"]) == 2 * POOL, lb_rows


def test_too_little_load_makes_the_resets(run):
    """One run: gaps shorter than the idle timeout give no resets, longer gaps do."""
    ev = run.events
    reqs = [e for e in ev if e["kind"] == "request"]
    busy = [e for e in reqs if e["phase"] == 0]
    quiet = [e for e in reqs if e["phase"] == 1]
    assert len(busy) == SHORT[0] * POOL and all(e["ok"] for e in busy)
    # the 2nd long burst finds the whole pool reset and, without retry, fails it
    failed = [e for e in quiet if not e["ok"]]
    assert len(failed) == POOL and {e["burst"] for e in failed} == {SHORT[0] + 1}
    # surgewatch, per interval: nothing while the gaps were short, all of them after
    quiet_start = min(e["ts"] for e in quiet)
    windows = interval_windows(run.records)
    fe_rates = [x for x in run.records if x["type"] == "rate" and x["service"] == run.fe]
    before = sum(x.get("resets_received", 0) for x in fe_rates if windows[x["seq"]][1] <= quiet_start)
    after = sum(x.get("resets_received", 0) for x in fe_rates if windows[x["seq"]][1] > quiet_start)
    assert (before, after) == (0, EXPECTED_RESETS)
    # the busy phase covered several intervals (it was watched, not skipped)
    busy_end = max(e["ts"] for e in busy)
    assert sum(1 for s, (a, b) in windows.items() if b <= busy_end) >= 4
