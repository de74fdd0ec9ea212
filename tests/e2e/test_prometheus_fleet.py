"""`surgewatch record --from-prometheus` against a real Prometheus (Debian's package) on
loopback, loaded with a fleet's history made by `promtool tsdb create-blocks-from
openmetrics`: the profile's fleet totals and per-host quantiles are what the generated
counters say, and `compare` fails a test environment logging 100x more per host and
passes one within the limits. With the load counters (schema 1.5) on some hosts: the
ratios of sums per host and fleet, and compare on the per-connection basis (1% of the
traffic and 100x the log writes per connection fails, 1% and the same passes). Its exit
codes for a bad query and no data, too."""
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.support.loopback import free_port

PROMETHEUS, PROMTOOL = "/usr/bin/prometheus", "/usr/bin/promtool"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.skipif(
    not (os.path.exists(PROMETHEUS) and os.path.exists(PROMTOOL))
    and not os.environ.get("SURGEWATCH_REQUIRE_PRIVILEGED"),
    reason="Debian's prometheus is not installed (make setup installs it)")

SCRAPE, HOURS, STEP = 15, 3, 60
# env -> host -> service -> (log writes/s, log bytes/s, resets sent/s, resets received/s)
FLEET = {
    "prod": {
        "web1": {"app.service": (10, 1000, 1, 0), "db.service": (5, 500, 0, 0)},
        "web2": {"app.service": (20, 2000, 2, 0.5)},
        "web3": {"app.service": (60, 6000, 3, 0), "db.service": (7, 700, 0, 0)},
    },
    "test-loud": {"t1": {"app.service": (3000, 300000, 1, 0)}},     # 100x a host's mean
    "test-quiet": {"t2": {"app.service": (35, 3500, 2, 0)}},        # 1.17x
    # 1% of a prod host's connections: the same per connection, and 100x the log writes
    "test-lean": {"t3": {"app.service": (0.2, 20, 0.02, 0)}},
    "test-chatty": {"t4": {"app.service": (20, 2000, 0.02, 0)}},
}
# env -> host -> service -> (accepted/s, connected/s, TCP bytes out/s or None: no exact
# count); hosts not here run a surgewatch without load counters (web3, test-loud/quiet)
LOAD = {
    "prod": {
        "web1": {"app.service": (4, 1, 10240), "db.service": (5, 0, 5120)},
        "web2": {"app.service": (8, 2, None)},
    },
    "test-lean": {"t3": {"app.service": (0.1, 0, 204.8)}},
    "test-chatty": {"t4": {"app.service": (0.1, 0, 204.8)}},
}


def _series(fam, col, table, directions):
    """Every sample of one counter family from table (FLEET or LOAD)."""
    for env, hosts in table.items():
        for host, services in hosts.items():
            for svc, rates in services.items():
                base = f'env="{env}",instance="{host}:9477",job="surgewatch",service="{svc}"'
                cols = [(col, "")] if col is not None else directions
                for c, extra in cols:
                    if rates[c] is not None:
                        yield base + extra, rates[c]


def openmetrics(end):
    """The counters every host's /metrics would have had, one sample per SCRAPE seconds
    for HOURS hours (plus one step before the range) up to end."""
    start = end - HOURS * 3600 - STEP
    times = range(int(start), int(end) + 1, SCRAPE)
    resets = [(2, ',direction="sent"'), (3, ',direction="received"')]
    conns = [(0, ',direction="accepted"'), (1, ',direction="connected"')]
    fams = [("surgewatch_log_writes", 0, FLEET, None),
            ("surgewatch_log_write_bytes", 1, FLEET, None),
            ("surgewatch_tcp_resets", None, FLEET, resets),
            ("surgewatch_tcp_connections", None, LOAD, conns),
            ("surgewatch_tcp_sent_bytes", 2, LOAD, None)]
    out = []
    for fam, col, table, directions in fams:
        out.append(f"# TYPE {fam} counter")
        for labels, rate in _series(fam, col, table, directions):
            for t in times:
                out.append(f"{fam}_total{{{labels}}} {rate * (t - start):.12g} {t}")
    return "\n".join(out) + "\n# EOF\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    d = tmp_path_factory.mktemp("fleet")
    end = (int(time.time()) // 3600 - 1) * 3600        # whole hours, all in the past
    (d / "fleet.om").write_text(openmetrics(end))
    res = subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics",
                          str(d / "fleet.om"), str(d / "tsdb")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    (d / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
    port = free_port()
    log = open(d / "prometheus.log", "w+")     # noqa: SIM115 (open while it runs)
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (d / "prometheus.log").read_text()
            try:
                urllib.request.urlopen(url + "/-/ready", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (d / "prometheus.log").read_text()
                time.sleep(0.2)
        yield {"url": url, "end": end, "dir": d}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def approx(v):
    return pytest.approx(v, rel=1e-9)       # rate()'s float division


def surgewatch(*args):
    return subprocess.run([sys.executable, "-m", "collector", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def record(prom, env, name):
    out = prom["dir"] / name
    res = surgewatch("record", "--from-prometheus", prom["url"], "--match", f'{{env="{env}"}}',
                     "--range", f"{HOURS}h", "--step", f"{STEP}s", "--end", str(prom["end"]),
                     "-o", str(out))
    assert res.returncode == 0, res.stderr
    return out, json.loads(out.read_text())


def test_fleet_profile_is_what_the_history_says(prometheus):
    _, doc = record(prometheus, "prod", "prod.json")
    assert doc["basis"] == "per_host" and doc["intervals"] == HOURS * 3600 // STEP
    assert doc["hosts"] == ["web1:9477", "web2:9477", "web3:9477"]
    assert (doc["started"], doc["ended"]) == (prometheus["end"] - HOURS * 3600,
                                              prometheus["end"])
    app, db = doc["services"]["app.service"], doc["services"]["db.service"]
    assert (app["hosts"], db["hosts"]) == (3, 2)
    w = app["log_writes_per_s"]
    # hosts 10, 20, 60: total 90, mean 30, median 20, p95 = 20 + 0.9 x (60 - 20)
    assert (w["fleet_total"], w["mean"], w["median"], w["p95"], w["max"]) == \
        (approx(90), approx(30), approx(20), approx(56), approx(60))
    b = app["log_bytes_per_s"]
    assert (b["fleet_total"], b["median"], b["p95"]) == (approx(9000), approx(2000),
                                                         approx(5600))
    s, r = app["resets_sent_per_s"], app["resets_received_per_s"]
    assert (s["fleet_total"], s["median"], s["p95"]) == (approx(6), approx(2), approx(2.9))
    assert (r["fleet_total"], r["median"], r["max"]) == (approx(0.5), approx(0), approx(0.5))
    d = db["log_writes_per_s"]
    assert (d["fleet_total"], d["median"], d["p95"]) == (approx(12), approx(6), approx(6.9))


def test_compare_fails_the_loud_test_environment_and_passes_the_quiet_one(prometheus):
    prod, _ = record(prometheus, "prod", "prod.json")
    loud, _ = record(prometheus, "test-loud", "loud.json")
    quiet, _ = record(prometheus, "test-quiet", "quiet.json")
    res = surgewatch("compare", str(prod), str(loud))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "100.00x" in res.stdout and "EXCEEDS" in res.stdout
    assert "sources: baseline Prometheus, 3 hosts (a host's rate over the range); current " \
        "Prometheus, 1 host" in res.stdout
    assert res.stdout.splitlines()[-1] == "FAIL: 1 service over the limits: app.service"
    res = surgewatch("compare", str(prod), str(quiet))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1].startswith("ok: every service within the limits")


def test_load_signals_and_ratios_are_what_the_history_says(prometheus):
    _, doc = record(prometheus, "prod", "prod.json")
    assert doc["version"] == 2
    assert doc["signals"][4:] == ["conns_per_s", "tcp_bytes_out_per_s", "log_writes_per_conn",
                                  "log_bytes_per_tcp_kib", "resets_per_conn"]
    app, db = doc["services"]["app.service"], doc["services"]["db.service"]
    c = app["conns_per_s"]
    # web1 4 + 1, web2 8 + 2 connections/s; web3 has no load counters
    assert (c["fleet_total"], c["median"], c["p95"], c["max"]) == \
        (approx(15), approx(7.5), approx(9.75), approx(10))
    assert app["conns"] == approx(15 * HOURS * 3600)
    assert app["tcp_bytes_out"] == approx(10240 * HOURS * 3600)
    # log writes per connection: web1 10 / 5, web2 20 / 10; web3's 60/s has no conns
    w = app["log_writes_per_conn"]
    assert (w["mean"], w["fleet_total"], w["median"], w["p95"], w["hosts"]) == \
        (approx(2), approx(2), approx(2), approx(2), 2)
    # log bytes per TCP KiB: web1 only (web2 has no exact byte count): 1000 / 10
    b = app["log_bytes_per_tcp_kib"]
    assert (b["mean"], b["median"], b["hosts"]) == (approx(100), approx(100), 1)
    # resets per connection: web1 (1 + 0) / 5, web2 (2 + 0.5) / 10; the fleet 3.5 / 15
    r = app["resets_per_conn"]
    assert (r["mean"], r["median"], r["p95"], r["max"]) == \
        (approx(3.5 / 15), approx(0.225), approx(0.2475), approx(0.25))
    d = db["log_writes_per_conn"]
    assert (d["mean"], d["hosts"], db["conns_per_s"]["fleet_total"]) == (approx(1), 1, approx(5))
    assert db["log_bytes_per_tcp_kib"]["mean"] == approx(100)


def test_compare_on_the_per_connection_basis(prometheus):
    prod, _ = record(prometheus, "prod", "prod.json")
    chatty, cdoc = record(prometheus, "test-chatty", "chatty.json")
    lean, _ = record(prometheus, "test-lean", "lean.json")
    assert cdoc["services"]["app.service"]["conns"] == approx(0.1 * HOURS * 3600)
    res = surgewatch("compare", str(prod), str(chatty), "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["basis"] == "per_connection"
    row = next(r for r in doc["rows"] if r["service"] == "app.service")
    assert row["basis"] == "per_connection"
    w = row["signals"]["log_writes_per_conn"]
    assert (w["baseline"], w["current"], w["ratio"], w["exceeds"]) == \
        (approx(2), approx(200), approx(100), True)
    assert row["signals"]["log_bytes_per_tcp_kib"]["ratio"] == approx(100)
    res = surgewatch("compare", str(prod), str(chatty))
    assert res.returncode == 1
    assert res.stdout.splitlines()[-1] == "FAIL: 1 service over the limits: app.service"
    # its absolute rate (20 writes/s) is under a prod host's 30/s: only the ratio sees it
    assert surgewatch("compare", str(prod), str(chatty), "--basis", "absolute").returncode == 0
    res = surgewatch("compare", str(prod), str(lean))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "basis per_connection (--basis auto)" in res.stdout
    # a side without load counters: absolute, and the report says why
    quiet, _ = record(prometheus, "test-quiet", "quiet.json")
    res = surgewatch("compare", str(prod), str(quiet))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "absolute (no load in the current profile): app.service, db.service" in res.stdout


def test_no_data_and_a_bad_query_are_exit_2_in_one_line(prometheus):
    res = surgewatch("record", "--from-prometheus", prometheus["url"], "--match",
                     '{env="staging"}', "--range", "1h", "-o", "-")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith('surgewatch: error: no surgewatch data for {env="staging"}')
    assert res.stderr.count("\n") == 1
    res = surgewatch("record", "--from-prometheus", prometheus["url"], "--match",
                     "{env=prod}", "-o", "-")
    assert res.returncode == 2
    assert res.stderr.startswith("surgewatch: error: Prometheus rejected the query: ")
    assert res.stderr.count("\n") == 1
