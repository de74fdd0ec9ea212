"""journald's rate limits as the host's files set them: journald.conf and its drop-ins,
per-unit LogRateLimitIntervalSec= / LogRateLimitBurst= (unit files, drop-ins, PID 1's
exports), and the journal's free space that scales the burst (the arithmetic:
collector/host/journald_ratelimit.py; the files' syntax: systemd_conf.py). Read-only;
`root` is injectable (like ProcFS's) so unit tests read recorded trees. A file that
cannot be read or a value that cannot be parsed costs one warning line and that
setting's default, never an exception. Rules: docs/detection.md, "Loss risk".
"""
import os
import time
from dataclasses import dataclass

from collector.host.hostroot import HostFiles
from collector.host.journald_ratelimit import (DEFAULT_BURST, DEFAULT_INTERVAL_S,
                                               journal_available, scaled)
from collector.host.journald_ratelimit import RateLimit  # noqa: F401 (for_unit() returns it)
from collector.host.systemd_conf import (conf_files, parse_conf, parse_size, parse_unsigned,
                                         unit_files)
from collector.host.timespans import parse_timespan

JOURNAL_DEV_LOG = "/run/systemd/journal/dev-log"   # journald's syslog socket

# What PID 1 exports for a running unit, and journald reads (journald-context.c):
# symlinks whose target is the value; interval in microseconds. Not exported when unset.
EXPORTED = "/run/systemd/units"

UNIT_SUFFIXES = (".service", ".scope", ".socket", ".mount", ".swap", ".timer", ".path",
                 ".slice", ".target", ".device", ".automount")


@dataclass(frozen=True)
class _Journald:
    interval_s: float
    burst: int
    source: str
    storage: str
    settings: dict            # other [Journal] keys read (SystemMaxUse, ...)


class JournaldLimits:
    """The rate limit journald applies to a unit, from the files under `root`.

    warn(message): one line per problem (each said once). Answers are cached for
    ttl_s (journald itself looks at free space every 30 s)."""

    def __init__(self, root="/", warn=None, ttl_s=30.0, clock=time.monotonic,
                 statvfs=os.statvfs):
        self.files = HostFiles(root)
        self.warn_fn = warn
        self.ttl_s, self.clock, self.statvfs = ttl_s, clock, statvfs
        self._warned = set()
        self._cache = {}           # key -> (time, answer)

    def _warn(self, msg):
        if msg not in self._warned:
            self._warned.add(msg)
            if self.warn_fn is not None:
                self.warn_fn(msg)

    def _cached(self, key, make):
        now = self.clock()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        if len(self._cache) > 4096:
            self._cache.clear()
        value = make()
        self._cache[key] = (now, value)
        return value

    # -- journald.conf ------------------------------------------------------------------
    def _read_lines(self, path):
        try:
            return parse_conf(self.files.read(path))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            self._warn(f"{path}: cannot read ({getattr(e, 'strerror', None) or e}); "
                       "its journald settings are not used")
            return []

    def journald_files(self):
        """[host path] journald reads its settings from, in the order it applies them."""
        return conf_files(self.files, "journald.conf")

    def _journald(self):
        interval, burst = DEFAULT_INTERVAL_S, DEFAULT_BURST
        src_i = src_b = "default"
        storage, settings = "auto", {}
        for path in self.journald_files():
            for section, key, value in self._read_lines(path):
                if section != "Journal":
                    continue
                if key in ("RateLimitIntervalSec", "RateLimitInterval"):
                    interval, src_i = self._value(path, key, value, parse_timespan,
                                                  DEFAULT_INTERVAL_S), path
                elif key == "RateLimitBurst":
                    burst, src_b = self._value(path, key, value, parse_unsigned,
                                               DEFAULT_BURST), path
                elif key == "Storage":
                    storage = value
                elif key in ("SystemMaxUse", "SystemKeepFree", "RuntimeMaxUse",
                             "RuntimeKeepFree"):
                    settings[key] = self._value(path, key, value, parse_size, None) \
                        if value else None
        source = src_i if src_i == src_b else f"interval {src_i}, burst {src_b}"
        return _Journald(interval, burst, source, storage, settings)

    def _value(self, path, key, value, parse, default):
        try:
            return parse(value)
        except ValueError as e:
            shown = "the default" if default is None else f"{default:g}"
            self._warn(f"{path}: {key}={value}: {e}; using {shown}")
            return default

    def journald(self):
        return self._cached("journald", self._journald)

    # -- the journal's free space ---------------------------------------------------------
    def _available(self):
        """(available bytes, journal dir) as journald computes them, or (None, None)."""
        j = self.journald()
        if j.storage == "none":
            return None, None
        try:
            machine = self.files.read("/etc/machine-id").strip()
        except OSError:
            machine = ""
        candidates = []
        if j.storage != "volatile":
            candidates.append(("/var/log/journal", "System"))
        candidates.append(("/run/log/journal", "Runtime"))
        for base, kind in candidates:
            if j.storage == "auto" and base == "/var/log/journal" and \
                    not os.path.isdir(self.files.host(base) or ""):
                continue
            d = f"{base}/{machine}" if machine else base
            host = self.files.host(d)
            if host is None or not os.path.isdir(host):
                continue
            try:
                sv = self.statvfs(host)
                used = 0
                for entry in os.scandir(host):
                    if entry.name.endswith((".journal", ".journal~")) and \
                            entry.is_file(follow_symlinks=False):
                        used += entry.stat(follow_symlinks=False).st_blocks * 512
            except OSError as e:
                self._warn(f"{d}: cannot measure the journal's space ({e.strerror or e}); "
                           "judging against the burst unscaled")
                return None, None
            fs_size = sv.f_frsize * sv.f_blocks
            return journal_available(fs_size, sv.f_bsize * sv.f_bavail, used,
                                     j.settings.get(f"{kind}MaxUse"),
                                     j.settings.get(f"{kind}KeepFree")), d
        return None, None

    def available(self):
        return self._cached("available", self._available)

    # -- units ----------------------------------------------------------------------------
    def unit_files(self, unit):
        """[host path] of `unit`'s file and drop-ins, in the order systemd applies them."""
        return unit_files(self.files, unit)

    def _exported(self, unit):
        """(interval_s or None, burst or None, True) from PID 1's exports of a running
        unit, or (None, None, False) when it exports nothing for it."""
        if not self.files.lexists(f"{EXPORTED}/invocation:{unit}"):
            return None, None, False
        out = []
        for name, parse in (("log-rate-limit-interval", lambda v: int(v) / 1e6),
                            ("log-rate-limit-burst", int)):
            path = f"{EXPORTED}/{name}:{unit}"
            try:
                raw = self.files.readlink(path)
            except FileNotFoundError:
                out.append(None)
                continue
            except OSError as e:
                self._warn(f"{path}: cannot read ({e.strerror or e}); using journald's")
                out.append(None)
                continue
            try:
                out.append(parse(raw))
            except ValueError:
                self._warn(f"{path}: {raw!r} is not a number; using journald's")
                out.append(None)
        return out[0], out[1], True

    def _from_unit_files(self, unit):
        interval = burst = None
        src_i = src_b = None
        for path in self.unit_files(unit):
            for section, key, value in self._read_lines(path):
                if section in ("Unit", "Install"):
                    continue
                if key == "LogRateLimitIntervalSec":
                    interval, src_i = self._value(path, key, value, parse_timespan, None), path
                elif key == "LogRateLimitBurst":
                    burst, src_b = self._value(path, key, value, parse_unsigned, None), path
        # 0 or unset: "not set" (PID 1 exports neither): journald's own setting applies
        return (interval or None, src_i), (burst or None, src_b)

    def _for_unit(self, unit):
        j = self.journald()
        interval, burst, running = self._exported(unit)
        if running:
            src_i = src_b = f"{EXPORTED} (running unit)"
        else:
            (interval, src_i), (burst, src_b) = self._from_unit_files(unit)
        if interval is None:
            interval, src_i = j.interval_s, j.source
        if burst is None:
            burst, src_b = j.burst, j.source
        source = src_i if src_i == src_b else f"interval {src_i}, burst {src_b}"
        return scaled(interval, burst, source, self.available()[0])

    def for_unit(self, unit):
        """The RateLimit journald applies to `unit` ("nginx.service"); a service name that
        is not a unit (a comm, "container:<id>") gets journald's own setting."""
        if not isinstance(unit, str) or "/" in unit or unit.startswith(".") or \
                not unit.endswith(UNIT_SUFFIXES):
            unit = ""
        return self._cached(("unit", unit), lambda: self._for_unit(unit) if unit
                            else self._for_unit_default())

    def _for_unit_default(self):
        j = self.journald()
        return scaled(j.interval_s, j.burst, j.source, self.available()[0])

    # -- sockets --------------------------------------------------------------------------
    def reaches_journald(self, socket_path):
        """Whether a syslog socket path ends at journald's syslog socket (/dev/log is a
        symlink to it on systemd hosts)."""
        return self._cached(("sock", socket_path),
                            lambda: self.files.real(socket_path) == JOURNAL_DEV_LOG)
