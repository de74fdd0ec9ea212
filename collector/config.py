"""`surgewatch run` configuration: a TOML file, checked completely at load.

Every problem (unknown key, wrong type, impossible value, unreadable file, bad TOML) is a
BadInput of one line, "FILE: key: reason", so the daemon refuses to start with exit 2.
Keys and defaults are documented in docs/operations.md.
"""
import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field

from collector.errors import BadInput
from collector.host.logdest import LogRules

DEFAULT_PATH = "/etc/surgewatch/surgewatch.toml"
STDOUT_FORMATS = ("msgpack", "json", "none")
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.05, 3600.0
MIN_SEGMENT_BYTES = 4096
# Paths a `rate` record lists per service, by writes; the rest are summed exactly in one
# "(other)" entry (docs/stream.md, schema 1.3). 0: every path. Collector.max_paths.
RATE_MAX_PATHS = 20


@dataclass(frozen=True)
class SegmentsConfig:
    enabled: bool = True
    dir: str = "/var/lib/surgewatch"
    max_segment_bytes: int = 16 * 1024 * 1024
    max_segment_age_s: float = 3600.0
    max_total_bytes: int = 1024 * 1024 * 1024


@dataclass(frozen=True)
class SocketConfig:
    enabled: bool = True
    path: str = "/run/surgewatch/stream.sock"
    mode: int = 0o660
    queue_records: int = 10000


@dataclass(frozen=True)
class PrometheusConfig:
    enabled: bool = True
    listen: str = "127.0.0.1:9477"
    max_services: int = 200
    max_paths_per_service: int = 5
    label_idle_s: float = 3600.0


@dataclass(frozen=True)
class ResetsConfig:
    enabled: bool = True
    max_records: int = 100


@dataclass(frozen=True)
class Config:
    path: str = DEFAULT_PATH      # the file it came from (or would have)
    interval: float = 1.0
    rate_max_paths: int = RATE_MAX_PATHS
    log_rules: LogRules = field(default_factory=LogRules)
    stdout_format: str = "msgpack"
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)
    socket: SocketConfig = field(default_factory=SocketConfig)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    resets: ResetsConfig = field(default_factory=ResetsConfig)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def with_segments(self, **changes):
        return dataclasses.replace(self, segments=dataclasses.replace(self.segments, **changes))


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
    top = c.table(data, "", ("interval", "rate_max_paths", "log_rules", "outputs", "resets"))
    cfg = Config(path=path)
    if "interval" in top:
        cfg = cfg.replace(interval=c.number(top, "interval", "interval",
                                            MIN_INTERVAL_S, MAX_INTERVAL_S))
    if "rate_max_paths" in top:
        cfg = cfg.replace(rate_max_paths=c.number(top, "rate_max_paths", "rate_max_paths",
                                                  0, 1_000_000, integer=True))
    if "log_rules" in top:
        c.table(top["log_rules"], "log_rules", ("dirs", "globs", "journald_sockets"))
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
    t = c.table(value, where, ("enabled", "path", "mode", "queue_records"))
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
                               "label_idle_s"))
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


def _check_owner(path, st, euid=None):
    """Refuse a config that someone other than its reader (root for the daemon) could
    have written: owned by another user, or group- or world-writable. Whoever can write
    it chooses what the privileged daemon reads, writes and listens on."""
    euid = os.geteuid() if euid is None else euid
    if st.st_uid not in (0, euid):
        raise BadInput(f"{path}: owned by uid {st.st_uid}, not by root; a config is trusted "
                       f"only from root: chown root {path}")
    if st.st_mode & 0o022:
        who = "others" if st.st_mode & 0o002 else "its group"
        raise BadInput(f"{path}: writable by {who} (mode {st.st_mode & 0o7777:04o}); a config "
                       f"is trusted only when only its owner can write it: chmod go-w {path}")


def load(path=None):
    """The config from `path` (None: DEFAULT_PATH, where a missing file means defaults)."""
    explicit = path is not None
    path = str(path) if explicit else DEFAULT_PATH
    try:
        with open(path, "rb") as f:
            _check_owner(path, os.fstat(f.fileno()))
            raw = f.read()
    except FileNotFoundError:
        if not explicit:
            return Config(path=path)
        raise BadInput(f"{path}: cannot read config: no such file; "
                       "give an existing file to --config") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: cannot read config: is a directory; "
                       "give a TOML file") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot read config: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
        data = tomllib.loads(text)
    except UnicodeDecodeError as e:
        raise BadInput(f"{path}: not UTF-8 text (byte {e.start}); a config is a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"{path}: invalid TOML: {e}") from None
    return parse(data, path)


# -- command-line flags ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Overrides:
    """Command-line flags; each one given wins over the config file (also after SIGHUP)."""

    interval: float | None = None
    format: str | None = None
    segments_dir: str | None = None
    no_segments: bool = False
    log_dirs: tuple = ()
    log_globs: tuple = ()
    journald_sockets: tuple = ()
    socket_path: str | None = None
    no_socket: bool = False
    prometheus_listen: str | None = None
    no_prometheus: bool = False
    no_resets: bool = False

    def apply(self, cfg):
        if self.interval is not None:
            cfg = cfg.replace(interval=float(self.interval))
        if self.format is not None:
            cfg = cfg.replace(stdout_format=self.format)
        if self.segments_dir is not None:
            if not self.segments_dir.startswith("/"):
                raise BadInput(f"--segments-dir: {self.segments_dir!r} is not an absolute path")
            cfg = cfg.with_segments(dir=self.segments_dir, enabled=True)
        if self.no_segments:
            cfg = cfg.with_segments(enabled=False)
        if self.socket_path is not None:
            if not self.socket_path.startswith("/"):
                raise BadInput(f"--socket: {self.socket_path!r} is not an absolute path")
            cfg = cfg.replace(socket=dataclasses.replace(cfg.socket, path=self.socket_path,
                                                         enabled=True))
        if self.no_socket:
            cfg = cfg.replace(socket=dataclasses.replace(cfg.socket, enabled=False))
        if self.prometheus_listen is not None:
            try:
                parse_listen(self.prometheus_listen)
            except ValueError as e:
                raise BadInput(f"--prometheus: {e}") from None
            cfg = cfg.replace(prometheus=dataclasses.replace(
                cfg.prometheus, listen=self.prometheus_listen, enabled=True))
        if self.no_prometheus:
            cfg = cfg.replace(prometheus=dataclasses.replace(cfg.prometheus, enabled=False))
        if self.no_resets:
            cfg = cfg.replace(resets=dataclasses.replace(cfg.resets, enabled=False))
        if self.log_dirs or self.log_globs or self.journald_sockets:
            r = cfg.log_rules
            cfg = cfg.replace(log_rules=LogRules(
                dirs=self.log_dirs or r.dirs, globs=self.log_globs or r.globs,
                journald_sockets=self.journald_sockets or r.journald_sockets))
        return cfg
