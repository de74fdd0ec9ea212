"""The Prometheus endpoint beyond the counters: the landing page on /, 404 elsewhere,
surgewatch_build_info, and the idle histogram's _sum and _count
(collector/sinks/prometheus.py, prometheus_exposition.py, prometheus_http.py)."""
import platform
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector import __version__
from collector.records.model import RESETS_IDLE_HIST, SCHEMA_VERSION, rate_record
from collector.sinks.prometheus import PrometheusSink


def families(sink):
    return {f.name: f for f in text_string_to_metric_families(sink.render().decode())}


@pytest.fixture
def served():
    sink = PrometheusSink("127.0.0.1", 0)
    try:
        yield sink
    finally:
        sink.close()


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers["Content-Type"], r.read().decode()


def test_landing_page_links_to_metrics(served):
    status, ctype, body = get(served.url + "/")
    assert (status, ctype) == (200, "text/html; charset=utf-8")
    assert '<a href="metrics">Metrics</a>' in body
    assert f"version {__version__}, record schema {SCHEMA_VERSION}" in body
    status, ctype, body = get(served.url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    assert "surgewatch_build_info{" in body


@pytest.mark.parametrize("path", ["/metric", "/favicon.ico", "/metrics/x"])
def test_other_paths_are_404_naming_metrics(served, path):
    with pytest.raises(urllib.error.HTTPError) as e:
        get(served.url + path)
    assert e.value.code == 404
    assert e.value.read().decode() == "not found: metrics are at /metrics\n"


def test_url_names_the_bound_port(served):
    _, port = served.address
    assert served.url == f"http://127.0.0.1:{port}" and port not in (0, 2024)


def test_build_info_is_one_series_of_value_1():
    fam = families(PrometheusSink(serve=False))["surgewatch_build_info"]
    assert [(s.labels, s.value) for s in fam.samples] == [
        ({"version": __version__, "schema": SCHEMA_VERSION,
          "python": platform.python_version(), "kernel": platform.release()}, 1.0)]


def test_idle_histogram_has_exact_count_and_lower_bound_sum():
    # 3 at < 1 ms, 2 in [1, 2) ms, 4 in [4, 8) ms, 1 in [2048, 4096) ms, 1 >= 2^22 ms
    rec = rate_record("h", 1.0, seq=0, interval=1.0, service="app", pids=[1], comms=["x"],
                      log_writes=0, log_bytes=0, paths=[])
    rec[RESETS_IDLE_HIST] = [3, 2, 0, 4] + [0] * 8 + [1] + [0] * 10 + [1]
    sink = PrometheusSink(serve=False)
    sink.write_interval([rec])
    sink.write_interval([rec])
    got = {s.name: s.value for s in families(sink)["surgewatch_tcp_reset_idle_seconds"].samples
           if not s.name.endswith("_bucket")}
    # lower edges: 0, 1, 4, 2048, 2^22 ms; twice
    assert got == {"surgewatch_tcp_reset_idle_seconds_count": 22.0,
                   "surgewatch_tcp_reset_idle_seconds_sum":
                       2 * (0 * 3 + 1 * 2 + 4 * 4 + 2048 + 2 ** 22) / 1000.0}
