"""docs/prometheus/: the alerting and recording rules pass Debian's `promtool check rules`
and their unit tests (`promtool test rules`: input series, expected alerts and values),
and every surgewatch metric they name is one the Prometheus sink serves."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.records import model
from collector.sinks.prometheus import PrometheusSink

DIR = Path(__file__).resolve().parents[2] / "docs" / "prometheus"
RULES = ["surgewatch-recording.yml", "surgewatch-alerts.yml"]
NAME = re.compile(r"(?<![:\w])surgewatch_[a-z0-9_]+(?![:\w])")


@pytest.fixture(scope="module")
def promtool():
    path = shutil.which("promtool") or "/usr/bin/promtool"
    if not os.path.exists(path):
        if os.environ.get("SURGEWATCH_REQUIRE_PRIVILEGED"):
            pytest.fail("promtool missing: run `make setup` (Debian's prometheus package)")
        pytest.skip("promtool (Debian's prometheus package) not installed: run `make setup`")
    return path


def run(promtool, *args):
    return subprocess.run([promtool, *args], cwd=DIR, capture_output=True, text=True,
                          timeout=120, check=False)


def test_rules_pass_promtool_check(promtool):
    res = run(promtool, "check", "rules", *RULES)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("SUCCESS") == len(RULES), res.stdout


def test_rules_unit_tests_pass(promtool):
    res = run(promtool, "test", "rules", "surgewatch-rules-test.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def served_names():
    """Every sample name the sink serves, with a service that has writes, resets, load and
    an idle histogram, one stats record and two alert records (one of them log_loss_risk)."""
    sink = PrometheusSink(serve=False)
    rate = model.rate_record("h", 1.0, seq=0, interval=1.0, service="a", pids=[1], comms=["a"],
                             log_writes=1, log_bytes=1, resets_sent=1, resets_received=1,
                             paths=[{"path": "/var/log/a.log", "writes": 1, "bytes": 1,
                                     "pids": [1]}])
    stats = model.stats_record("h", 2.0, seq=0, interval=1.0, drain_ms=1, keys=1,
                               map_capacity=2, lost_events=0,
                               unresolved_writes=0, cpu_s=0, rss_bytes=1)
    alert = model.alert_record("h", 1.0, seq=1, state="open", service="a",
                               signal="log_writes_per_s", rate=5, baseline=1, spread=1,
                               ratio=5, threshold=2, reason="above_baseline", started=1.0,
                               peak=5, intervals=0, top={})
    loss = model.alert_record("h", 1.0, seq=1, state="open", service="a",
                              signal="log_loss_risk", rate=50, baseline=None, spread=None,
                              ratio=None, threshold=8, reason="journald_rate_limit",
                              started=1.0, peak=50, intervals=0, top={},
                              limit={"limit": "journald", "key": "journald"})
    rate.update(conns_accepted=1, conns_connected=1, tcp_bytes_out=1,     # schema 1.5 load
                log_lost=1)                                               # 1.8
    rate.update({model.RESETS_SENT_BY_KIND: {"abort": 1},                 # 1.10
                 model.RESETS_IDLE_HIST: [1] * 24})
    sink.write_interval([rate, alert, loss, stats])
    return {s.name for f in text_string_to_metric_families(sink.render().decode())
            for s in f.samples}


def test_rules_and_their_tests_name_only_served_metrics():
    served = served_names()
    for name in RULES + ["surgewatch-rules-test.yml"]:
        used = set(NAME.findall((DIR / name).read_text()))
        assert used, name
        assert used <= served, (name, sorted(used - served))
