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
    "probes": "probes",
    "alerts": "alerts",
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
