"""Checking a parsed TOML document into a Config: every problem (unknown key, wrong type,
impossible value) is a BadInput of one line, "FILE: key: reason"."""
import dataclasses
import json
import math

from collector.aggregate.signals import DetectorConfig
from collector.config.schema import (
    DEFAULT_PATH,
    MAX_INTERVAL_S,
    MIN_INTERVAL_S,
    MIN_SEGMENT_BYTES,
    STDOUT_FORMATS,
    WRITE_HOOKS,
    Config,
    ProbesConfig,
    PrometheusConfig,
    ResetsConfig,
    SegmentsConfig,
    SocketConfig,
)
from collector.errors import BadInput
from collector.host.logdest import RULE_KEYS, LogRules


class _Checker:
    def __init__(self, path):
        self.path = path

    def fail(self, key, reason):
        raise BadInput(f"{self.path}: {key}: {reason}")

    def table(self, value, key, known):
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {_kind(value)}")
        for k in value:
            if k not in known:
                name = f"{key}.{k}" if key else k
                self.fail(name, f"unknown key (expected one of {', '.join(known)})")
        return value

    def number(self, table, key, name, lo, hi, integer=False):
        value = table[key]
        ok = (isinstance(value, int) if integer else isinstance(value, (int, float)))
        if isinstance(value, bool) or not ok:
            self.fail(name, f"expected {'an integer' if integer else 'a number'}, "
                            f"got {_kind(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(name, f"must be a finite number, got {value}")
        if value < lo or value > hi:
            self.fail(name, f"must be between {lo:g} and {hi:g}, got {value:g}")
        return value if integer else float(value)


def _kind(value):
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def parse(data, path=DEFAULT_PATH):
    """Config from a parsed TOML mapping; BadInput "PATH: key: reason" on any problem."""
    c = _Checker(path)
    top = c.table(data, "", ("interval", "rate_max_paths", "lock_file", "host_root",
                             "log_rules", "outputs", "resets", "probes", "alerts", "capacity"))
    cfg = Config(path=path)
    if "interval" in top:
        cfg = cfg.replace(interval=c.number(top, "interval", "interval",
                                            MIN_INTERVAL_S, MAX_INTERVAL_S))
    if "rate_max_paths" in top:
        cfg = cfg.replace(rate_max_paths=c.number(top, "rate_max_paths", "rate_max_paths",
                                                  0, 1_000_000, integer=True))
    if "lock_file" in top:
        cfg = cfg.replace(lock_file=_abs_path(c, top, "lock_file", "lock_file"))
    if "host_root" in top:
        cfg = cfg.replace(host_root=_abs_path(c, top, "host_root", "host_root"))
    if "probes" in top:
        cfg = cfg.replace(probes=_probes(c, top["probes"]))
    if "alerts" in top:
        cfg = cfg.replace(alerts=_alerts(c, top["alerts"]),
                          alerts_profile=_alerts_profile(c, top["alerts"]))
    if "capacity" in top:
        cfg = cfg.replace(capacity=_capacity(c, top["capacity"]))
    if "log_rules" in top:
        c.table(top["log_rules"], "log_rules", RULE_KEYS)
        try:
            cfg = cfg.replace(log_rules=LogRules.from_config(top["log_rules"]))
        except BadInput as e:
            raise BadInput(f"{path}: {e}") from None
    if "outputs" in top:
        outputs = c.table(top["outputs"], "outputs", ("stdout", "segments", "socket",
                                                       "prometheus"))
        if "stdout" in outputs:
            so = c.table(outputs["stdout"], "outputs.stdout", ("format",))
            if "format" in so:
                fmt = so["format"]
                if not isinstance(fmt, str):
                    c.fail("outputs.stdout.format", f"expected a string, got {_kind(fmt)}")
                if fmt not in STDOUT_FORMATS:
                    c.fail("outputs.stdout.format",
                           f"{fmt!r} is not one of {', '.join(STDOUT_FORMATS)}")
                cfg = cfg.replace(stdout_format=fmt)
        if "segments" in outputs:
            cfg = cfg.replace(segments=_segments(c, outputs["segments"]))
        if "socket" in outputs:
            cfg = cfg.replace(socket=_socket(c, outputs["socket"]))
        if "prometheus" in outputs:
            cfg = cfg.replace(prometheus=_prometheus(c, outputs["prometheus"]))
    if "resets" in top:
        r = c.table(top["resets"], "resets", ("enabled", "max_records"))
        changes = {}
        if "enabled" in r:
            changes["enabled"] = _bool(c, r, "enabled", "resets.enabled")
        if "max_records" in r:
            changes["max_records"] = c.number(r, "max_records", "resets.max_records",
                                              0, 100_000, integer=True)
        cfg = cfg.replace(resets=ResetsConfig(**changes))
    return cfg


def _bool(c, table, key, name):
    if not isinstance(table[key], bool):
        c.fail(name, f"expected true or false, got {_kind(table[key])}")
    return table[key]


def _abs_path(c, table, key, name):
    p = table[key]
    if not isinstance(p, str):
        c.fail(name, f"expected a string, got {_kind(p)}")
    if not p.startswith("/"):
        c.fail(name, f"{p!r} is not an absolute path")
    return p


def _socket(c, value):
    where = "outputs.socket"
    t = c.table(value, where, ("enabled", "path", "mode", "queue_records", "max_subscribers",
                               "max_subscribers_per_uid", "stall_timeout_s"))
    changes = {}
    if "enabled" in t:
        changes["enabled"] = _bool(c, t, "enabled", f"{where}.enabled")
    if "path" in t:
        p = _abs_path(c, t, "path", f"{where}.path")
        if len(p.encode("utf-8", "surrogateescape")) > 107:
            c.fail(f"{where}.path", "longer than 107 bytes (the limit of a unix socket path)")
        changes["path"] = p
    if "mode" in t:
        changes["mode"] = c.number(t, "mode", f"{where}.mode", 0, 0o777, integer=True)
    if "queue_records" in t:
        changes["queue_records"] = c.number(t, "queue_records", f"{where}.queue_records",
                                            10, 10_000_000, integer=True)
    for key in ("max_subscribers", "max_subscribers_per_uid"):
        if key in t:
            changes[key] = c.number(t, key, f"{where}.{key}", 1, 10_000, integer=True)
    if "stall_timeout_s" in t:
        changes["stall_timeout_s"] = c.number(t, "stall_timeout_s",
                                              f"{where}.stall_timeout_s", 1, 86400)
    return dataclasses.replace(SocketConfig(), **changes)


def parse_listen(text):
    """(host, port) from "HOST:PORT" or "[V6]:PORT"; ValueError saying why not."""
    if not isinstance(text, str):
        raise ValueError(f"expected a string \"HOST:PORT\", got {_kind(text)}")
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address as [ADDR]:PORT")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (port 1..65535)")
    return host, int(port)


def _prometheus(c, value):
    where = "outputs.prometheus"
    t = c.table(value, where, ("enabled", "listen", "max_services", "max_paths_per_service",
                               "label_idle_s", "max_connections", "request_timeout_s"))
    changes = {}
    if "enabled" in t:
        changes["enabled"] = _bool(c, t, "enabled", f"{where}.enabled")
    if "listen" in t:
        try:
            parse_listen(t["listen"])
        except ValueError as e:
            c.fail(f"{where}.listen", str(e))
        changes["listen"] = t["listen"]
    if "max_services" in t:
        changes["max_services"] = c.number(t, "max_services", f"{where}.max_services",
                                           1, 100_000, integer=True)
    if "max_paths_per_service" in t:
        changes["max_paths_per_service"] = c.number(
            t, "max_paths_per_service", f"{where}.max_paths_per_service", 0, 1000, integer=True)
    if "label_idle_s" in t:
        changes["label_idle_s"] = c.number(t, "label_idle_s", f"{where}.label_idle_s",
                                           10, 365 * 86400)
    if "max_connections" in t:
        changes["max_connections"] = c.number(t, "max_connections",
                                              f"{where}.max_connections", 1, 1000, integer=True)
    if "request_timeout_s" in t:
        changes["request_timeout_s"] = c.number(t, "request_timeout_s",
                                                f"{where}.request_timeout_s", 0.1, 300)
    return dataclasses.replace(PrometheusConfig(), **changes)


def _segments(c, value):
    where = "outputs.segments"
    seg = c.table(value, where, ("enabled", "dir", "max_segment_bytes", "max_segment_age_s",
                                 "max_total_bytes"))
    out = SegmentsConfig()
    changes = {}
    if "enabled" in seg:
        if not isinstance(seg["enabled"], bool):
            c.fail(f"{where}.enabled", f"expected true or false, got {_kind(seg['enabled'])}")
        changes["enabled"] = seg["enabled"]
    if "dir" in seg:
        d = seg["dir"]
        if not isinstance(d, str):
            c.fail(f"{where}.dir", f"expected a string, got {_kind(d)}")
        if not d.startswith("/"):
            c.fail(f"{where}.dir", f"{d!r} is not an absolute path")
        changes["dir"] = d
    if "max_segment_bytes" in seg:
        changes["max_segment_bytes"] = c.number(seg, "max_segment_bytes",
                                                f"{where}.max_segment_bytes",
                                                MIN_SEGMENT_BYTES, 2 ** 40, integer=True)
    if "max_segment_age_s" in seg:
        changes["max_segment_age_s"] = c.number(seg, "max_segment_age_s",
                                                f"{where}.max_segment_age_s",
                                                1, 365 * 86400)
    if "max_total_bytes" in seg:
        changes["max_total_bytes"] = c.number(seg, "max_total_bytes",
                                              f"{where}.max_total_bytes",
                                              MIN_SEGMENT_BYTES, 2 ** 50, integer=True)
    out = dataclasses.replace(out, **changes)
    if out.max_total_bytes < out.max_segment_bytes:
        c.fail(f"{where}.max_total_bytes",
               f"{out.max_total_bytes} is smaller than max_segment_bytes "
               f"({out.max_segment_bytes}); the cap must hold at least one whole segment")
    return out




OLD_PROBE_KEYS = {"max_loads": "max_tcp_processes"}     # old name -> what it is called now


def _probes(c, value):
    where = "probes"
    t = c.table(value, where, tuple(f.name for f in dataclasses.fields(ProbesConfig))
                + tuple(OLD_PROBE_KEYS))
    t, written = dict(t), {}            # errors name the key as the file wrote it
    for old, new in OLD_PROBE_KEYS.items():
        if old in t:
            if new in t:
                c.fail(f"{where}.{old}", f"the old name of {new}, which is set too; "
                                         f"keep {new} only")
            t[new], written[new] = t.pop(old), old
    changes = {}
    if "write_hook" in t:
        hook = t["write_hook"]
        if hook not in WRITE_HOOKS:
            c.fail(f"{where}.write_hook", f"{hook!r} is not one of {', '.join(WRITE_HOOKS)}")
        changes["write_hook"] = hook
    for key, lo, hi in (("max_keys", 64, 1 << 24), ("max_inodes", 64, 1 << 24),
                        ("max_owners", 16, 1 << 24), ("max_tcp_processes", 16, 1 << 24)):
        if key in t:
            changes[key] = c.number(t, key, f"{where}.{written.get(key, key)}", lo, hi,
                                    integer=True)
    if "cache_dir" in t:
        d = t["cache_dir"]
        if not isinstance(d, str) or (d and not d.startswith("/")):
            c.fail(f"{where}.cache_dir", f"{d!r} is not an absolute path (or \"\" for no "
                                         "cache)")
        changes["cache_dir"] = d
    if "load_timeout_s" in t:
        changes["load_timeout_s"] = c.number(t, "load_timeout_s", f"{where}.load_timeout_s",
                                             1, 3600)
    return dataclasses.replace(ProbesConfig(), **changes)


# [alerts]: the detector's scalar settings (docs/detection.md); per-signal floors are fixed
ALERT_KEYS = tuple(f.name for f in dataclasses.fields(DetectorConfig) if f.name != "limits")


def _alerts(c, value):
    t = c.table(value, "alerts", ALERT_KEYS + ("profile",))
    changes = {}
    for key in t:
        if key == "profile":
            continue
        default = getattr(DetectorConfig(), key)
        integer = isinstance(default, int)
        changes[key] = c.number(t, key, f"alerts.{key}", 0, 1e9, integer=integer)
    try:
        return DetectorConfig(**changes)
    except ValueError as e:
        c.fail("alerts", str(e))


def _alerts_profile(c, table):
    """[alerts] profile: "" (none) or the absolute path of a profile; read at start."""
    if "profile" not in table or table["profile"] == "":
        return ""
    return _abs_path(c, table, "profile", "alerts.profile")


MAX_CAPACITY_GLOBS = 256
_GLOB_STARTS = ("/", "*", "?", "[")


def _capacity(c, value):
    """[capacity]: "path glob" = lines/s. A glob matches a rate record's path, which is
    absolute or "<channel>:<socket path>" ("journald:/run/systemd/journal/stdout")."""
    if not isinstance(value, dict):
        c.fail("capacity", f"expected a table of \"path glob\" = lines/s, got {_kind(value)}")
    if len(value) > MAX_CAPACITY_GLOBS:
        c.fail("capacity", f"{len(value)} globs; at most {MAX_CAPACITY_GLOBS}")
    out = []
    for glob, lines in value.items():
        name = f"capacity.{json.dumps(glob, ensure_ascii=False)}"
        prefix = glob.partition(":")[0]
        if not glob.startswith(_GLOB_STARTS) and not (":" in glob and prefix.isalpha()):
            c.fail(name, "not a path glob: start it with / (a file), or with a channel "
                         "such as journald: or syslog:")
        if isinstance(lines, bool) or not isinstance(lines, (int, float)):
            c.fail(name, f"expected a number of lines/s, got {_kind(lines)}")
        if not math.isfinite(lines) or lines <= 0 or lines > 1e12:
            c.fail(name, f"must be a number of lines/s above 0 (at most 1e12), got {lines:g}")
        out.append((glob, float(lines)))
    return tuple(out)
