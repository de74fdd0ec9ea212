"""The fleet gate live, end to end: a real `surgewatch run` counts a real server's load and
logs; a real Prometheus (Debian's package) scrapes it; `record --from-prometheus` makes a
profile of each of three phases and `compare` judges them per connection.

One server (its own unit cgroup: the service) answers paced loopback requests from a
client (another unit) and writes log lines per request with write(2):
  prod   100 requests/s for PHASE_S, 1 line each     (the baseline)
  loud    20 requests/s, 10 lines each              (2x prod's absolute rate: within
                                                    3x; 10x prod's lines per connection)
  quiet   20 requests/s, 1 line each                (a fifth of the traffic, same per request)
compare: loud fails (exit 1) on the per-connection basis, quiet passes (exit 0), and
Prometheus' own counters hold exactly what the workloads did (lines, connections, bytes).
"""
import json
import math
import os
import subprocess
import sys
import time

import pytest

from tests.owncgroup import unit_cgroup
from tests.support.daemon import Daemon
from tests.support.prometheus import PROMETHEUS, Prometheus

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("SURGEWATCH_REQUIRE_PRIVILEGED"),
                       reason="needs root: run `make test` as root"),
    pytest.mark.skipif(not os.path.exists(PROMETHEUS) and
                       not os.environ.get("SURGEWATCH_REQUIRE_PRIVILEGED"),
                       reason="Debian's prometheus is not installed (make setup installs it)"),
]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEP = 5                       # the profiles' rate resolution (5 scrapes)
PHASE_S = 15                   # each phase's workload: three steps
REPLY = 1000                   # bytes the server sends per request
REQUEST = b"GET /"
PHASES = {"prod": (100, 1), "loud": (20, 10), "quiet": (20, 1)}   # requests/s, lines each

SERVER = """
import os, socket, sys
log, lines, reply = sys.argv[1], int(sys.argv[2]), b"r" * int(sys.argv[3])
fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(512)
print(srv.getsockname()[1], flush=True)
served = 0
while True:
    c, _ = srv.accept()
    req = c.recv(64)
    if req == b"STOP":
        break
    for _ in range(lines):
        os.write(fd, b"request handled: status 200\\n")
    c.sendall(reply)
    c.close()
    served += 1
print(served, flush=True)
"""

CLIENT = """
import socket, sys, time
port, rate, n, req = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode()
t0, got = time.monotonic(), 0
for i in range(n):
    delay = t0 + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(req)
    while True:
        d = c.recv(65536)
        if not d:
            break
        got += len(d)
    c.close()
print(got, flush=True)
"""

LINE = len(b"request handled: status 200\n")


def surgewatch(*args):
    return subprocess.run([sys.executable, "-m", "collector", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=180, check=False)


def counter(prom, expr):
    res = prom.query(expr)
    return float(res[0]["value"][1]) if res else 0.0


def wait_counter(prom, expr, want, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = counter(prom, expr)
        if got == want:
            return got
        time.sleep(0.5)
    return counter(prom, expr)


def sleep_until(t):
    time.sleep(max(0.0, t - time.time()))


def run_phase(prom, server_cg, client_cg, log, name, totals, exprs):
    """One phase, on whole steps of the wall clock: (start, end) of its range."""
    rate, lines = PHASES[name]
    n = int(rate * PHASE_S)
    start = math.ceil(time.time() / STEP) * STEP
    sleep_until(start + 0.5)
    totals["requests"] += n
    totals["lines"] += n * lines
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(log), str(lines), str(REPLY)],
                              stdout=subprocess.PIPE, text=True,
                              preexec_fn=server_cg.enter)
    sport = int(server.stdout.readline())
    client = subprocess.run([sys.executable, "-c", CLIENT, str(sport), str(rate), str(n),
                             REQUEST.decode()], capture_output=True, text=True, timeout=300,
                            preexec_fn=client_cg.enter)
    assert client.stdout.strip() == str(n * REPLY), client.stderr
    stop = subprocess.run([sys.executable, "-c", "import socket, sys; "
                           "socket.create_connection(('127.0.0.1', int(sys.argv[1])))"
                           ".sendall(b'STOP')", str(sport)], timeout=30,
                          preexec_fn=client_cg.enter)
    assert stop.returncode == 0
    assert server.stdout.readline().strip() == str(n)
    assert server.wait(timeout=30) == 0
    totals["connects"] += n + 1                        # the STOP connection too
    totals["accepts"] += n + 1
    # everything scraped, then the range closes on the next whole step
    assert wait_counter(prom, exprs["lines"], totals["lines"]) == totals["lines"], prom.output()
    end = math.ceil((time.time() + 1) / STEP) * STEP
    sleep_until(end + 2)                               # a scrape after the range's end
    return start, end


def record(prom, tmp_path, name, start, end, match):
    out = tmp_path / f"{name}.json"
    res = surgewatch("record", "--from-prometheus", prom.url, "--match", match,
                     "--range", f"{end - start}s", "--step", f"{STEP}s", "--end", str(end),
                     "-o", str(out))
    assert res.returncode == 0, res.stderr
    return out


def test_fleet_gate_live_per_connection(tmp_path):
    tag = os.getpid() % 10000
    with unit_cgroup(f"swfl{tag}") as server_cg, unit_cgroup(f"swflc{tag}") as client_cg:
        _gate(tmp_path, server_cg, client_cg, tag)


def _gate(tmp_path, server_cg, client_cg, tag):
    d = Daemon(tmp_path, interval=0.5, stdout="none", prometheus=True)
    prom = Prometheus(tmp_path, d.port)
    svc, cli = server_cg.service, client_cg.service
    exprs = {
        "lines": f'surgewatch_log_writes_total{{service="{svc}"}}',
        "accepts": f'surgewatch_tcp_connections_total{{service="{svc}",direction="accepted"}}',
        "connects": f'surgewatch_tcp_connections_total{{service="{cli}",direction="connected"}}',
        "server_bytes": f'surgewatch_tcp_sent_bytes_total{{service="{svc}"}}',
        "client_bytes": f'surgewatch_tcp_sent_bytes_total{{service="{cli}"}}',
    }
    try:
        prom.wait_ready()
        d.wait_started(lambda: counter(prom, "surgewatch_intervals_total") >= 1)
        totals = {"requests": 0, "lines": 0, "connects": 0, "accepts": 0}
        log = d.logdir / "app.log"
        ranges = {name: run_phase(prom, server_cg, client_cg, log, name, totals, exprs)
                  for name in ("prod", "loud", "quiet")}

        # exact: Prometheus holds what the workloads did
        assert wait_counter(prom, exprs["accepts"], totals["accepts"]) == totals["accepts"]
        assert wait_counter(prom, exprs["connects"], totals["connects"]) == totals["connects"]
        if prom.query(exprs["server_bytes"]):          # the kernel counts TCP bytes
            assert counter(prom, exprs["server_bytes"]) == totals["requests"] * REPLY
            assert counter(prom, exprs["client_bytes"]) == \
                totals["requests"] * len(REQUEST) + 4 * len(ranges)       # + the STOPs
        assert counter(prom, f'surgewatch_log_write_bytes_total{{service="{svc}"}}') == \
            totals["lines"] * LINE

        match = f'{{job="surgewatch",service=~"swflc?{tag}[.]service"}}'
        profiles = {name: record(prom, tmp_path, name, *ranges[name], match)
                    for name in ranges}
        loud = surgewatch("compare", str(profiles["prod"]), str(profiles["loud"]), "--json")
        quiet = surgewatch("compare", str(profiles["prod"]), str(profiles["quiet"]), "--json")
        absolute = surgewatch("compare", str(profiles["prod"]), str(profiles["loud"]),
                              "--basis", "absolute", "--json")
    finally:
        code = d.stop()
        prom.stop()
    assert code == 0, d.err
    rl, rq, ra = (json.loads(r.stdout) for r in (loud, quiet, absolute))
    row = {r["service"]: r for r in rl["rows"]}[svc]
    assert (loud.returncode, rl["basis"], row["basis"]) == (1, "per_connection",
                                                             "per_connection"), loud.stdout
    assert row["exceeds"]
    assert quiet.returncode == 0, quiet.stdout
    assert {r["service"]: r for r in rq["rows"]}[svc]["basis"] == "per_connection"
    # on absolute rates the loud phase (2x prod's lines/s) would have passed
    assert (absolute.returncode, ra["basis"]) == (0, "absolute"), absolute.stdout
