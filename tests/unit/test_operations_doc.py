"""docs/operations.md documents every `surgewatch run` config key with its default."""
import dataclasses
import re
import tomllib
from pathlib import Path

from collector import config
from collector.host.logdest import RULE_KEYS

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"

# where each field of config.Config lives in the file
SECTIONS = {
    "interval": "interval",
    "rate_max_paths": "rate_max_paths",
    "lock_file": "lock_file",
    "host_root": "host_root",
    "probes": "probes",
    "alerts": "alerts",
    "alerts_profile": "alerts.profile",
    "log_rules": "log_rules",
    "stdout_format": "outputs.stdout.format",
    "segments": "outputs.segments",
    "socket": "outputs.socket",
    "prometheus": "outputs.prometheus",
    "resets": "resets",
    "capacity": "capacity",
}


def config_block():
    text = DOC.read_text()
    section = text[text.index("### Config file"):]
    m = re.search(r"```toml\n(.*?)```", section, re.S)
    assert m, "no ```toml block under '### Config file' in docs/operations.md"
    return tomllib.loads(m.group(1))


def keys(table, prefix=""):
    out = set()
    for k, v in table.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= keys(v, name + ".")
        else:
            out.add(name)
    return out


def expected_keys():
    out = set()
    for f in dataclasses.fields(config.Config):
        if f.name == "path":
            continue
        assert f.name in SECTIONS, f"config field {f.name!r}: add it to SECTIONS and the doc"
        where = SECTIONS[f.name]
        default = getattr(config.Config(), f.name)
        if f.name == "log_rules":
            out |= {f"{where}.{k}" for k in RULE_KEYS}     # every rule, datagram and runtime
        elif f.name == "capacity":     # "path glob" = lines/s: user keys, none by default
            continue
        elif f.name == "alerts":       # the detector's scalars; per-signal floors are fixed
            out |= {f"{where}.{g.name}" for g in dataclasses.fields(default)
                    if g.name != "limits"}
        elif dataclasses.is_dataclass(default):
            out |= {f"{where}.{g.name}" for g in dataclasses.fields(default)}
        else:
            out.add(where)
    return out


def test_every_config_key_is_documented():
    documented = keys(config_block())
    missing = expected_keys() - documented
    assert not missing, f"config keys not in docs/operations.md: {sorted(missing)}"
    assert not documented - expected_keys(), "documented keys the daemon does not know"


def test_documented_values_are_the_defaults():
    def rules(r):
        return r.key()                 # every RULE_KEYS value, in order

    cfg = config.parse(config_block(), path="doc")
    default = config.Config(path="doc")
    assert rules(cfg.log_rules) == rules(default.log_rules)
    assert cfg.replace(log_rules=None) == default.replace(log_rules=None)


def metrics_section():
    text = DOC.read_text()
    start = text.index("\n### Prometheus\n")
    return text[start:text.index("\n### ", start + 1)]


def test_every_metric_the_endpoint_serves_is_in_the_metrics_table():
    """Every series a served endpoint has after one interval (a service with log writes,
    resets, load; a stats record with every counter) is named in the table, as
    `name` (prometheus-client's own process metrics are the `surgewatch_process_*` row)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from collector.records import model
    from collector.sinks.prometheus import PrometheusSink

    rate = model.rate_record("h", 1.0, seq=0, interval=1.0, service="a.service", pids=[1],
                             comms=["x"], log_writes=1, log_bytes=2,
                             paths=[{"path": "/var/log/a.log", "writes": 1, "bytes": 2,
                                     "pids": [1]}], resets_sent=1, resets_received=1)
    rate.update(conns_accepted=1, conns_connected=1, tcp_bytes_out=1, log_lost=1)
    stats = model.stats_record("h", 2.0, seq=0, interval=1.0, drain_ms=1, keys=1,
                               map_capacity=2, lost_events=0,
                               unresolved_writes=0, cpu_s=0.1, rss_bytes=1)
    stats.update(lost_writes=1, lost_writes_by_uid={"65534": 1})
    sink = PrometheusSink("127.0.0.1", 0)
    try:
        sink.write_interval([rate, stats])
        text = urllib.request.urlopen(sink.url + "/metrics", timeout=30).read().decode()
    finally:
        sink.close()
    names = set()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            name = s.name
            for suffix in ("_bucket", "_sum", "_count", "_created"):
                if fam.type == "histogram" and name.endswith(suffix):
                    name = name[:-len(suffix)]
            names.add(name)
    table = metrics_section()
    missing = sorted(n for n in names if not n.startswith("surgewatch_process_")
                     and f"`{n}`" not in table)
    assert not missing, f"docs/operations.md, metrics table: describe {missing}"
    assert {"surgewatch_host_resource_errors_total", "surgewatch_prometheus_connections",
            "surgewatch_prometheus_connections_dropped_total"} <= names
