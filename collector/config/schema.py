"""What can be configured, with its defaults (docs/operations.md lists every key)."""
import dataclasses
from dataclasses import dataclass, field

from collector.aggregate.signals import DetectorConfig
from collector.host.logdest import LogRules
from collector.probes.fentry import HOOKS

DEFAULT_PATH = "/etc/surgewatch/surgewatch.toml"
STDOUT_FORMATS = ("auto", "msgpack", "json", "none")   # auto: msgpack into a pipe or file
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.05, 3600.0
MIN_SEGMENT_BYTES = 4096
# Paths a `rate` record lists per service, by writes; the rest are summed exactly in one
# "(other)" entry (docs/stream.md, schema 1.3). 0: every path. Collector.max_paths.
RATE_MAX_PATHS = 20


LOCK_FILE = "/run/surgewatch/surgewatch.lock"
HOST_ROOT = "/proc/1/root"      # the host's root from a container with hostPID (hostroot.py)
WRITE_HOOKS = HOOKS     # probes.write_hook: collector/probes/fentry.py says which


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
    max_subscribers: int = 64           # connected at once; more are refused
    max_subscribers_per_uid: int = 16   # of one non-root user (SO_PEERCRED)
    stall_timeout_s: float = 60.0       # a subscriber taking no byte this long is dropped


@dataclass(frozen=True)
class PrometheusConfig:
    enabled: bool = True
    listen: str = "127.0.0.1:9477"
    max_services: int = 200
    max_paths_per_service: int = 5
    label_idle_s: float = 3600.0
    max_connections: int = 16           # HTTP connections at once (a thread each)
    request_timeout_s: float = 10.0     # a request must have arrived whole within


@dataclass(frozen=True)
class ResetsConfig:
    enabled: bool = True
    max_records: int = 100


@dataclass(frozen=True)
class ProbesConfig:
    write_hook: str = "auto"          # fentry where allowed, else tracepoints; or "fentry",
                                      # "tracepoints", "raw" (docs/probe-logwrites.md)
    max_keys: int = 65536             # (process, fd, inode) keys per interval
    max_inodes: int = 131072          # log/not-log verdicts kept in the kernel
    max_owners: int = 65536           # socket owners the resets probe remembers
    max_tcp_processes: int = 8192     # processes whose TCP load is counted per interval
                                      # (beyond: load_lost); "max_loads" before 2026-12-05
    load_timeout_s: float = 120.0     # a loader child still compiling then is killed
    cache_dir: str = "/var/cache/surgewatch/probes"   # compiled probes kept ("": off)


@dataclass(frozen=True)
class Config:
    path: str = DEFAULT_PATH      # the file it came from (or would have)
    interval: float = 1.0
    rate_max_paths: int = RATE_MAX_PATHS
    lock_file: str = LOCK_FILE
    host_root: str = HOST_ROOT
    log_rules: LogRules = field(default_factory=LogRules)
    stdout_format: str = "auto"
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)
    socket: SocketConfig = field(default_factory=SocketConfig)
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    resets: ResetsConfig = field(default_factory=ResetsConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    alerts: DetectorConfig = field(default_factory=DetectorConfig)
    # [alerts] profile: a profile of `surgewatch record` (this host's or a fleet's) that
    # seeds the baselines of the services it names ("": none; docs/detection.md)
    alerts_profile: str = ""
    # [capacity]: ((path glob, lines/s), ...) in file order: what a destination keeps up
    # with (docs/detection.md, "Loss risk"); journald's own limits are read from the host
    capacity: tuple = ()

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def with_segments(self, **changes):
        return dataclasses.replace(self, segments=dataclasses.replace(self.segments, **changes))
