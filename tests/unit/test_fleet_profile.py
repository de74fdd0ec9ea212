"""Fleet profiles from Prometheus query_range answers (collector/aggregate/fleet.py), the
API client's one-line errors and exit codes (collector/records/prometheus_api.py, against
a stub HTTP server on loopback), and compare across both kinds of profile."""
import json
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from tests.support.cli import cli_runner
from collector.aggregate.fleet import FleetBuilder, quantile
from collector.aggregate.compare import compare
from collector.aggregate.profile import check_profile
from collector.cli import main
from collector.commands.compare import render_compare
from collector.commands.record import default_step, fleet_queries, record_from_prometheus
from collector.errors import BadInput
from collector.records.prometheus_api import PrometheusUnavailable
from tests.support.loopback import free_port

FIX = Path(__file__).parent / "fixtures" / "prometheus"
END = 1764547200.0


def answer(name):
    return json.loads((FIX / f"query_range_{name}.json").read_text())


def fleet_profile(load=False):
    b = FleetBuilder(60)
    b.add_matrix("log_writes_per_s", answer("log_writes")["data"]["result"])
    b.add_matrix("log_bytes_per_s", answer("log_bytes")["data"]["result"])
    b.add_matrix(None, answer("resets")["data"]["result"],
                 split=("direction", {"sent": "resets_sent_per_s",
                                      "received": "resets_received_per_s"}))
    if load:
        b.add_matrix("tcp_bytes_out_per_s", answer("tcp_bytes")["data"]["result"])
        b.add_matrix(None, answer("conns")["data"]["result"], split=("direction", {
            "accepted": "conns_per_s", "connected": "conns_per_s"}))
    return b.profile("prometheus test")


def test_quantile_interpolates_between_ranks_as_promql():
    assert quantile([100, 10, 40, 25], 0.5) == 32.5
    assert quantile([10, 25, 40, 100], 0.95) == pytest.approx(91.0)
    assert quantile([7], 0.95) == 7 and quantile([], 0.5) == 0.0


def test_fleet_totals_and_per_host_quantiles_are_exact():
    doc = fleet_profile()
    assert check_profile(doc, "x") is None
    assert doc["basis"] == "per_host" and doc["intervals"] == 4 and doc["duration_s"] == 240
    assert doc["hosts"] == [f"web{i}:9477" for i in (1, 2, 3, 4)]
    assert (doc["started"], doc["ended"]) == (END - 240, END)
    assert doc["signals"] == ["log_writes_per_s", "log_bytes_per_s", "resets_sent_per_s",
                              "resets_received_per_s"]
    app = doc["services"]["app.service"]
    assert (app["hosts"], app["active_intervals"]) == (4, 4)
    w = app["log_writes_per_s"]
    # host means 10, 25, 40 (web3: its 3 steps), 100; fleet per step 130, 180, 170, 180
    assert w["fleet_total"] == 165.0
    assert (w["mean"], w["median"], w["max"]) == (43.75, 32.5, 100.0)
    assert w["p95"] == pytest.approx(91.0) and w["p90"] == pytest.approx(82.0)
    assert w["p10"] == pytest.approx(14.5)
    b = app["log_bytes_per_s"]
    assert (b["fleet_total"], b["median"]) == (10000.0, 2500.0)
    assert b["p95"] == pytest.approx(3850.0)
    s, r = app["resets_sent_per_s"], app["resets_received_per_s"]
    assert (s["fleet_total"], s["median"]) == (6.0, 3.0) and s["p95"] == pytest.approx(3.9)
    # NaN and unknown directions are dropped: only web2's 0.5/s received
    assert (r["fleet_total"], r["median"], r["max"]) == (0.5, 0.5, 0.5)
    other = doc["services"]["(other)"]
    assert other["hosts"] == 1 and other["log_writes_per_s"]["fleet_total"] == 1.5
    assert other["log_bytes_per_s"] == {"mean": 0.0, "sd": 0.0, "median": 0.0, "p10": 0.0,
                                        "p90": 0.0, "p95": 0.0, "max": 0.0,
                                        "fleet_total": 0.0}


def test_load_signals_and_ratios_of_sums_per_host_and_fleet():
    doc = fleet_profile(load=True)
    assert check_profile(doc, "x") is None and doc["version"] == 2
    assert doc["signals"] == ["log_writes_per_s", "log_bytes_per_s", "resets_sent_per_s",
                              "resets_received_per_s", "conns_per_s", "tcp_bytes_out_per_s",
                              "log_writes_per_conn", "log_bytes_per_tcp_kib",
                              "resets_per_conn"]
    app = doc["services"]["app.service"]
    # conns/s per host: web1 5, web2 20 + 5, web3 10 (its NaN dropped), web4 none
    c = app["conns_per_s"]
    assert (c["fleet_total"], c["median"], c["max"]) == (40.0, 10.0, 25.0)
    assert c["mean"] == pytest.approx(40 / 3)
    assert app["conns"] == (5 + 25 + 10) * 4 * 60
    # log writes / conn, a host's sums over the steps it has conns: web1 40/20, web2
    # 100/100, web3 120/40 (no writes in its first step); the fleet 260/160; web4 has no
    # conns and no ratio
    w = app["log_writes_per_conn"]
    assert (w["mean"], w["fleet_total"], w["hosts"]) == (1.625, 1.625, 3)
    assert (w["median"], w["max"]) == (2.0, 3.0)
    assert w["p95"] == pytest.approx(2.9) and w["p10"] == pytest.approx(1.2)
    assert w["sd"] == pytest.approx((2 / 3) ** 0.5)
    # log bytes / TCP KiB: web1 4000 / (40960 / 1024), web2 8000 / 160; web3 has no bytes
    b = app["log_bytes_per_tcp_kib"]
    assert (b["mean"], b["median"], b["max"], b["hosts"]) == (60.0, 75.0, 100.0, 2)
    assert b["p95"] == pytest.approx(97.5)
    t = app["tcp_bytes_out_per_s"]
    assert (t["fleet_total"], t["median"]) == (51200.0, 25600.0)
    assert app["tcp_bytes_out"] == (10240 + 40960) * 4 * 60
    # resets / conn: web1 8/20 (its NaN dropped), web2 (16 + 2)/100; web3 has no resets
    r = app["resets_per_conn"]
    assert (r["median"], r["max"], r["hosts"]) == (pytest.approx(0.29), 0.4, 2)
    assert r["mean"] == pytest.approx(26 / 120)
    # (other): conns counted, all 0: conns_per_s 0 and no ratio at all
    other = doc["services"]["(other)"]
    assert other["conns"] == 0.0 and other["conns_per_s"]["fleet_total"] == 0.0
    assert not {"log_writes_per_conn", "log_bytes_per_tcp_kib", "resets_per_conn"} & set(other)


def test_no_reset_series_means_no_reset_signals_and_no_samples_is_an_error():
    b = FleetBuilder(60)
    b.add_matrix("log_writes_per_s", answer("log_writes")["data"]["result"])
    assert b.profile("x")["signals"] == ["log_writes_per_s", "log_bytes_per_s"]
    with pytest.raises(ValueError):
        FleetBuilder(60).profile("x")


def test_queries_put_the_match_in_every_selector_and_tile_the_range():
    qs = fleet_queries('{env="prod"}', 60.0)
    assert [q[1] for q in qs] == [
        'sum by (service, instance) (rate(surgewatch_log_writes_total{env="prod"}[60s]))',
        'sum by (service, instance) (rate(surgewatch_log_write_bytes_total{env="prod"}[60s]))',
        'sum by (service, instance) (rate(surgewatch_tcp_sent_bytes_total{env="prod"}[60s]))',
        ('sum by (service, instance, direction) '
         '(rate(surgewatch_tcp_resets_total{env="prod"}[60s]))'),
        ('sum by (service, instance, direction) '
         '(rate(surgewatch_tcp_connections_total{env="prod"}[60s]))')]
    with pytest.raises(BadInput, match="label selector in braces"):
        fleet_queries('env="prod"', 60.0)


# -- the client against a stub server ---------------------------------------------------------
class Stub:
    """Answers /api/v1/query_range by the metric named in the query, or with `fail`."""

    def __init__(self, fail=None, tls=None):
        self.fail, self.seen = fail, []
        stub = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                stub.seen.append((self.path, form, self.headers.get("Authorization")))
                code, body = stub.fail or (200, stub.pick(form["query"][0]))
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def pick(self, q):
        for metric, name in (("log_writes", "log_writes"), ("log_write_bytes", "log_bytes"),
                             ("tcp_resets", "resets"), ("tcp_connections", "conns"),
                             ("tcp_sent_bytes", "tcp_bytes")):
            if f"surgewatch_{metric}_total" in q:
                return answer(name)
        return answer("empty")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub():
    servers = []

    def make(fail=None, tls=None):
        servers.append(Stub(fail, tls))
        return servers[-1]
    yield make
    for s in servers:
        s.close()


def test_record_from_prometheus_sends_aligned_range_and_token(stub, tmp_path):
    s = stub()
    tok = tmp_path / "token"
    tok.write_text("s3cret\n")
    doc = record_from_prometheus(s.url + "/", '{env="prod"}', range_s=240, step=60,
                                 end=END + 17, bearer_token_file=str(tok))
    assert doc["services"]["app.service"]["log_writes_per_s"]["fleet_total"] == 165.0
    assert doc["prometheus"] == {"url": s.url, "match": '{env="prod"}', "range_s": 240.0,
                                 "step_s": 60.0, "end": END}
    path, form, auth = s.seen[0]
    assert path == "/api/v1/query_range" and auth == "Bearer s3cret"
    assert (form["start"], form["end"], form["step"]) == (["1764547020.000"],
                                                          ["1764547200.000"], ["60"])
    assert len(s.seen) == 5
    assert doc["services"]["app.service"]["conns"] == 9600.0     # the load queries' answers


@pytest.mark.parametrize(("fail", "exc", "text"), [
    ((400, answer("bad_query")), BadInput,
     'Prometheus rejected the query: 1:40: parse error: unexpected identifier "prod"'),
    ((503, {"status": "error", "error": "overloaded"}), PrometheusUnavailable,
     "answered HTTP 503 Service Unavailable: overloaded; retry"),
    ((401, {}), PrometheusUnavailable, "HTTP 401 Unauthorized; give a valid token"),
    ((200, answer("empty")), BadInput, "no surgewatch data for {} at"),
    ((200, {"hello": 1}), PrometheusUnavailable, "not a Prometheus API answer"),
])
def test_errors_are_one_line_with_their_exit_code(stub, fail, exc, text):
    s = stub(fail)
    with pytest.raises(exc) as e:
        record_from_prometheus(s.url, range_s=240, step=60, end=END)
    assert text in str(e.value) and "\n" not in str(e.value)
    assert e.value.exit_code == (2 if exc is BadInput else 3)


def test_unreachable_server_is_exit_3_on_the_command_line(tmp_path):
    port = free_port()
    res = cli_runner().invoke(main, ["record", "--from-prometheus", f"http://127.0.0.1:{port}",
                                    "-o", str(tmp_path / "p.json")])
    assert res.exit_code == 3, res.output
    assert res.output.startswith(f"surgewatch: error: cannot reach Prometheus at "
                                 f"http://127.0.0.1:{port}: ")
    assert res.output.count("\n") == 1


def test_cli_options_only_with_from_prometheus_and_bad_durations(tmp_path):
    out = str(tmp_path / "p.json")
    res = cli_runner().invoke(main, ["record", "--from", "x", "--step", "60s", "-o", out])
    assert res.exit_code == 2 and "--step" in res.output and "only with --from-prometheus" \
        in res.output
    res = cli_runner().invoke(main, ["record", "--from-prometheus", "http://127.0.0.1:1",
                                    "--range", "yesterday", "-o", out])
    assert res.exit_code == 2 and "--range 'yesterday': expected a duration" in res.output
    res = cli_runner().invoke(main, ["record", "--from-prometheus", "ftp://x", "-o", out])
    assert res.exit_code == 2 and "not an http:// or https:// URL" in res.output
    res = cli_runner().invoke(main, ["record", "--from-prometheus", "http://127.0.0.1:1",
                                    "--end", "soon", "-o", out])
    assert res.exit_code == 2 and "--end 'soon': expected a duration ago" in res.output


def test_default_step_is_60s_or_coarser_within_10000_steps():
    assert default_step(86400) == 60.0
    assert default_step(30 * 86400) == 260.0       # ceil(2,592,000 / 10,000)


def test_compare_reports_each_sides_source_and_basis():
    fleet = fleet_profile()
    local = {"format": "surgewatch-profile", "version": 1, "hosts": ["test1"],
             "signals": ["log_writes_per_s", "log_bytes_per_s"],
             "services": {"app.service": {
                 "log_writes_per_s": dict.fromkeys(("mean", "sd", "median", "p10", "p90", "max"),
                                                   4375.0),
                 "log_bytes_per_s": dict.fromkeys(("mean", "sd", "median", "p10", "p90", "max"),
                                                  0.0)}}}
    r = compare(fleet, local)
    assert r["sides"] == {"baseline": {"origin": "prometheus", "basis": "per_host", "hosts": 4},
                          "current": {"origin": "local", "basis": "per_interval", "hosts": 1}}
    cell = next(x for x in r["rows"] if x["service"] == "app.service")["signals"]
    assert cell["log_writes_per_s"]["ratio"] == 100.0 and not r["ok"]
    text = render_compare(r, "prod.json", "test.json").splitlines()
    assert text[-3] == ("sources: baseline Prometheus, 4 hosts (a host's rate over the range); "
                        "current local record, 1 host (per-interval rates)")


def test_https_needs_its_ca_and_works_with_ca_file(stub, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    s = stub(tls=(str(cert), str(key)))
    with pytest.raises(PrometheusUnavailable, match="TLS certificate not trusted .*; give its "
                       "CA with --ca-file"):
        record_from_prometheus(s.url, range_s=240, step=60, end=END)
    doc = record_from_prometheus(s.url, range_s=240, step=60, end=END, ca_file=str(cert))
    assert doc["services"]["app.service"]["log_bytes_per_s"]["fleet_total"] == 10000.0
    with pytest.raises(BadInput, match="--ca-file .*: not a usable CA certificate file"):
        record_from_prometheus(s.url, range_s=240, step=60, end=END, ca_file=str(key))
