"""Hostile /proc contents end to end (docs/reliability.md): a process whose comm holds a
newline, quotes, a backslash and an escape sequence, living in a cgroup2 directory with
odd characters that the test creates, writes a log whose path holds a newline and quotes.
`surgewatch snapshot --json` must print valid JSON, `surgewatch run` must write a
decodable msgpack segment stream and serve a /metrics that parses, each naming the
service and path without corruption."""
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from tests.privileged.relhelp import record_figure
from tests.support.daemon import SURGEWATCH, Daemon
from tests.support.loopback import free_port

pytestmark = pytest.mark.privileged

COMM = b'ev\nil"\\\x1b[1m'                 # 15 bytes: the most a comm holds
CGROUP = 'sw-rel "odd\\ \x01name\u00e9.service'   # ends in .service: its name is the service
LOG_NAME = 'ho"stile\nna\'me $(x).log'

HOSTILE = textwrap.dedent("""
    import ctypes, os, sys, time
    comm, path, procs, seconds = sys.argv[1].encode("latin-1"), sys.argv[2], sys.argv[3], float(sys.argv[4])
    with open(procs, "w") as f:
        f.write(str(os.getpid()))
    ctypes.CDLL(None).prctl(15, ctypes.c_char_p(comm), 0, 0, 0)      # PR_SET_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    print("ready", flush=True)
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        os.write(fd, b"hostile line\\n")
        n += 1
        time.sleep(0.005)
    print(n, flush=True)
""")


@pytest.fixture
def odd_cgroup():
    from collector.host.cgroups import cgroup2_mount

    m = cgroup2_mount()
    if m is None:
        pytest.skip("no cgroup2 hierarchy")
    path = os.path.join(m[0], CGROUP)
    os.mkdir(path)
    try:
        yield path
    finally:
        for _ in range(50):
            try:
                os.rmdir(path)
                break
            except OSError:
                time.sleep(0.1)


def _start(logdir, cgroup, seconds):
    p = subprocess.Popen([sys.executable, "-c", HOSTILE, COMM.decode("latin-1"),
                          str(logdir / LOG_NAME), os.path.join(cgroup, "cgroup.procs"),
                          str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    return p


def _check_names(service, comms, paths, logdir):
    assert service == CGROUP, service
    assert COMM.decode("utf-8", "surrogateescape") in comms or \
        any("ev\nil" in c for c in comms), comms
    assert str(logdir / LOG_NAME) in paths, paths


def test_snapshot_json_with_hostile_names(tmp_path, odd_cgroup):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    p = _start(logdir, odd_cgroup, 600)             # until terminated, however slow the load
    try:
        res = subprocess.run([SURGEWATCH, "snapshot", "--duration", "3", "--json",
                              "--log-dir", str(logdir) + "/"],
                             capture_output=True, text=True, timeout=120)
    finally:
        p.terminate()
        p.wait()
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)                      # valid JSON or this raises
    mine = [s for s in doc["services"] if s["service"] == CGROUP]
    assert len(mine) == 1, [s["service"] for s in doc["services"]]
    s = mine[0]
    _check_names(s["service"], s["comms"], [x["path"] for x in s["paths"]], logdir)
    assert s["writes"] > 0


def test_daemon_msgpack_and_metrics_with_hostile_names(tmp_path, odd_cgroup):
    from prometheus_client.parser import text_string_to_metric_families

    from collector.records.segments import read_segments

    port = free_port()
    d = Daemon(tmp_path, interval=0.3, segments=True, prometheus=port)
    try:
        d.wait_meta()
        p = _start(d.logdir, odd_cgroup, 2)
        written = int(p.stdout.readline())
        p.wait()
        d.wait_stats(4)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    finally:
        rc = d.stop()
    assert rc == 0, d.err
    # msgpack: the segment store decodes and carries the names intact
    recs = list(read_segments(str(d.segdir), lambda e, kind: pytest.fail(f"{kind}: {e}")))
    rates = [r for r in recs if r["type"] == "rate" and r["service"] == CGROUP]
    assert rates
    _check_names(CGROUP, [c for r in rates for c in r["comms"]],
                 [x["path"] for r in rates for x in r["paths"]], d.logdir)
    assert sum(r["log_writes"] for r in rates) == written
    # JSON lines on stdout parsed too (Daemon json.loads every line)
    assert any(r.get("service") == CGROUP for r in d.records)
    # Prometheus: the exposition parses and the escaped labels come back intact
    text = body.decode("utf-8")
    found = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.labels.get("service") == CGROUP:
                found[(s.name, s.labels.get("path"))] = s.value
    assert found.get(("surgewatch_log_writes_total", None)) == written, found
    assert found.get(("surgewatch_log_path_writes_total", str(d.logdir / LOG_NAME))) == written
    record_figure("hostile", comm=COMM.decode("latin-1"), cgroup=CGROUP, path=LOG_NAME,
                  writes=written)
