"""A real Prometheus (Debian's package) scrapes a running `surgewatch run` over loopback;
its own query API must return the exact counts of a known workload."""
import os
import subprocess
import time

import pytest

from tests.owncgroup import unit_cgroup
from tests.support.daemon import Daemon
from tests.support.loopback import abort_connections
from tests.support.prometheus import Prometheus
from tests.support.writers import unique_writer

PROMETHEUS = "/usr/bin/prometheus"

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("SURGEWATCH_REQUIRE_PRIVILEGED"),
                       reason="needs root: run `make test` as root"),
    pytest.mark.skipif(not os.path.exists(PROMETHEUS) and
                       not os.environ.get("SURGEWATCH_REQUIRE_PRIVILEGED"),
                       reason="Debian's prometheus is not installed (make setup installs it)"),
]


@pytest.fixture
def workload_bin(tmp_path_factory):
    from tests.workloads.build import build

    d = tmp_path_factory.mktemp("bin")
    return lambda name: build(name, d)


def test_prometheus_scrapes_exact_log_writes(tmp_path, workload_bin):
    tag = os.getpid() % 10000
    writer = unique_writer(workload_bin, tmp_path, f"swe2e{tag}")
    with unit_cgroup(f"swe2e{tag}") as cg, unit_cgroup(f"swe2es{tag}") as srv_cg, \
            unit_cgroup(f"swe2ec{tag}") as cli_cg:
        _scrape_exact_counts(tmp_path, writer, cg, srv_cg, cli_cg)


def _scrape_exact_counts(tmp_path, writer, cg, srv_cg, cli_cg):
    service = cg.service
    d = Daemon(tmp_path, interval=0.3, stdout="none", prometheus=True)
    prom = Prometheus(tmp_path, d.port)
    try:
        prom.wait_ready()
        up = 'up{job="surgewatch"}'
        intervals = "surgewatch_intervals_total"

        def scraped_an_interval():
            res = prom.query(intervals)
            return res and float(res[0]["value"][1]) >= 1

        d.wait_started(scraped_an_interval)     # probes attached and Prometheus scraping
        log = d.logdir / "e2e.log"
        for lines in (400, 350, 250):
            subprocess.run([writer, str(log), str(lines), "50"], check=True,
                           preexec_fn=cg.enter)
        expr = f'surgewatch_log_writes_total{{service="{service}"}}'
        end, res = time.monotonic() + 30, []
        while time.monotonic() < end:
            res = prom.query(expr)
            if res and float(res[0]["value"][1]) == 1000:
                break
            time.sleep(0.5)
        assert [r["value"][1] for r in res] == ["1000"], prom.output()
        assert res[0]["metric"]["job"] == "surgewatch"
        b = prom.query(f'surgewatch_log_write_bytes_total{{service="{service}"}}')
        assert [r["value"][1] for r in b] == ["50000"]
        p = prom.query(f'surgewatch_log_path_writes_total{{service="{service}",'
                       f'path="{log}"}}')
        assert [r["value"][1] for r in p] == ["1000"]
        assert [r["value"][1] for r in prom.query(up)] == ["1"]
        # resets: a server aborts n loopback connections (SO_LINGER 0)
        n = 9
        srv_name, cli_name = srv_cg.service, cli_cg.service
        _, client, server = abort_connections(n, "swe2es", srv_cg, "swe2ec", cli_cg)
        assert client.stdout.strip() == str(n), client.stderr
        assert server.wait(timeout=30) == 0
        sent = f'surgewatch_tcp_resets_total{{service="{srv_name}",direction="sent"}}'
        received = f'surgewatch_tcp_resets_total{{service="{cli_name}",direction="received"}}'
        end = time.monotonic() + 30
        while time.monotonic() < end:
            got = [r["value"][1] for q in (sent, received) for r in prom.query(q)]
            if got == [str(n), str(n)]:
                break
            time.sleep(0.5)
        assert got == [str(n), str(n)], prom.output()
        kind = prom.query(f'surgewatch_tcp_resets_sent_by_kind_total{{service="{srv_name}"}}')
        assert [(r["metric"]["kind"], r["value"][1]) for r in kind] == [("abort", str(n))]
        code, err = d.stop(), d.err
    finally:
        d.stop()
        prom.stop()
    assert code == 0, err


def test_documented_fleet_config_and_rules_are_valid(tmp_path):
    """The scrape config in docs/operations.md, with the rules of docs/prometheus/ it
    names, passes Debian's promtool (the rules' own tests: tests/unit/test_prometheus_rules.py)."""
    import re
    from pathlib import Path

    promtool = "/usr/bin/promtool"
    if not os.path.exists(promtool):
        pytest.skip("promtool (Debian's prometheus) not installed")
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    blocks = {m.group(1).split("\n", 1)[0].lstrip("# ").strip(): m.group(1)
              for m in re.finditer(r"```yaml\n(.*?)```", doc, re.S)}
    assert set(blocks) >= {"prometheus.yml"}, blocks.keys()
    for name, text in blocks.items():
        (tmp_path / name).write_text(text)
    for name in ("surgewatch-recording.yml", "surgewatch-alerts.yml"):
        (tmp_path / name).write_bytes((Path(__file__).resolve().parents[2] / "docs" /
                                       "prometheus" / name).read_bytes())
    conf = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                          capture_output=True, text=True)
    assert conf.returncode == 0, conf.stdout + conf.stderr
    assert "SUCCESS: 2 rule files found" in conf.stdout, conf.stdout     # both were read
