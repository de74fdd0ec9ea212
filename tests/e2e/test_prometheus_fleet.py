"""`surgewatch record --from-prometheus` against a real Prometheus (Debian's package) on
loopback, loaded with a fleet's history made by `promtool tsdb create-blocks-from
openmetrics`: the profile's fleet totals and per-host quantiles are what the generated
counters say, and `compare` fails a test environment logging 100x more per host and
passes one within the limits. Its exit codes for a bad query and no data, too."""
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
}


def openmetrics(end):
    """The counters every host's /metrics would have had, one sample per SCRAPE seconds
    for HOURS hours (plus one step before the range) up to end."""
    start = end - HOURS * 3600 - STEP
    times = range(int(start), int(end) + 1, SCRAPE)
    fams = {"surgewatch_log_writes": 0, "surgewatch_log_write_bytes": 1,
            "surgewatch_tcp_resets": None}
    out = []
    for fam, col in fams.items():
        out.append(f"# TYPE {fam} counter")
        for env, hosts in FLEET.items():
            for host, services in hosts.items():
                for svc, rates in services.items():
                    base = f'env="{env}",instance="{host}:9477",job="surgewatch",service="{svc}"'
                    cols = [(col, "")] if col is not None else \
                        [(2, ',direction="sent"'), (3, ',direction="received"')]
                    for c, extra in cols:
                        for t in times:
                            out.append(f"{fam}_total{{{base}{extra}}} "
                                       f"{rates[c] * (t - start):g} {t}")
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
