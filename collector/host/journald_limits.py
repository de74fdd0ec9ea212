"""journald's rate limits as the host's files set them: journald.conf and its drop-ins,
per-unit LogRateLimitIntervalSec= / LogRateLimitBurst=, and the disk-space scaling of
the burst. Read-only; `root` is injectable (like ProcFS's) so unit tests read recorded
trees. A file that cannot be read or a value that cannot be parsed costs one warning
line and that setting's default, never an exception. Rules: docs/detection.md,
"Loss risk".
"""
import math
import os
import time
from dataclasses import dataclass

from collector.host.hostroot import HostFiles  # noqa: F401 (its home was here)
from collector.timespans import parse_timespan

DEFAULT_INTERVAL_S = 30.0        # journald.conf(5): RateLimitIntervalSec=30s
DEFAULT_BURST = 10000            # RateLimitBurst=10000
JOURNAL_DEV_LOG = "/run/systemd/journal/dev-log"   # journald's syslog socket

# journald.conf: the main file is the first of these that exists (newer systemd ships it
# in /usr/lib only), then every drop-in *.conf of the .conf.d dirs. A drop-in name found
# in several dirs is taken from the first dir (/etc over /run over /usr/local/lib over
# /usr/lib); all are applied in lexical order of their names, a later one winning.
_CONF_DIRS = ("/etc/systemd", "/run/systemd", "/usr/local/lib/systemd", "/usr/lib/systemd")
# the system manager's unit search path, highest priority first (systemd.unit(5))
UNIT_DIRS = ("/etc/systemd/system.control", "/run/systemd/system.control",
             "/run/systemd/transient", "/run/systemd/generator.early",
             "/etc/systemd/system", "/etc/systemd/system.attached", "/run/systemd/system",
             "/run/systemd/system.attached", "/run/systemd/generator",
             "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system",
             "/run/systemd/generator.late")
# What PID 1 exports for a running unit, and journald reads (journald-context.c):
# symlinks whose target is the value; interval in microseconds. Not exported when unset.
EXPORTED = "/run/systemd/units"

UNIT_SUFFIXES = (".service", ".scope", ".socket", ".mount", ".swap", ".timer", ".path",
                 ".slice", ".target", ".device", ".automount")
_MIB, _GIB = 1 << 20, 1 << 30
PAGE = 4096


@dataclass(frozen=True)
class RateLimit:
    """The limit journald applies to one unit's messages (per priority group)."""

    interval_s: float           # RateLimitIntervalSec (0: off)
    burst: int                  # RateLimitBurst as configured (0: off)
    effective_burst: int        # burst after journald's disk-space scaling
    source: str                 # where interval and burst came from, for people
    available_bytes: int | None = None   # journal space the scaling used (None: unknown)

    @property
    def enabled(self):
        return self.interval_s > 0 and self.burst > 0

    @property
    def per_s(self):
        """The long-run rate journald lets through: effective_burst / interval."""
        return self.effective_burst / self.interval_s if self.enabled else math.inf


# -- value syntax ---------------------------------------------------------------------
def parse_unsigned(text):
    s = text.strip()
    if not s.isdigit() or not s.isascii():
        raise ValueError(f"{text!r} is not an unsigned integer")
    return int(s)


def parse_size(text):
    """Bytes of a journald.conf size ("512M", "1G", "4096"; base 1024); ValueError."""
    s = text.strip()
    factors = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50,
               "E": 1 << 60}
    f = 1
    if s and s[-1] in factors:
        s, f = s[:-1], factors[s[-1]]
    try:
        v = float(s)
    except ValueError:
        raise ValueError(f"{text!r} is not a size (like 512M, 1G)") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{text!r} is not a size (like 512M, 1G)")
    return int(v * f)


# -- journald's own arithmetic ----------------------------------------------------------
def burst_modulate(burst, available):
    """The burst journald really allows, from the space still available to the journal.
    systemd src/journal/journald-rate-limit.c, burst_modulate(): k = log2(available),
    integer part; up to 1 MiB (k <= 20) the burst as configured, else
    burst * (k - 16) / 4 in integer arithmetic (16 MiB: x2, 256 MiB: x3, 4 GiB: x4,
    64 GiB: x5, 1 TiB: x6)."""
    k = max(int(available), 1).bit_length() - 1
    if k <= 20:
        return burst
    return burst * (k - 16) // 4


def _page_align(n):
    return (n + PAGE - 1) // PAGE * PAGE


def journal_available(fs_size, vfs_avail, used, max_use=None, keep_free=None):
    """The bytes journald counts as still available to its journal (the `available` of
    burst_modulate): systemd cache_space_refresh() with journal_default_metrics()
    (journald-server.c, journal-file.c): limit = clamp(used + (vfs_avail - keep_free),
    min_use, max_use), available = limit - used (never below 0). Defaults when not
    configured: max_use 10% of the file system (1 MiB .. 4 GiB), keep_free 5% (at most
    4 GiB), min_use 2% (1 .. 16 MiB), raised to the journal's current use."""
    if max_use is None:
        max_use = min(max(_page_align(fs_size // 10), _MIB), 4 * _GIB) if fs_size else _MIB
    else:
        max_use = _page_align(max_use)
        if max_use and max_use < _MIB:        # 2 x JOURNAL_FILE_SIZE_MIN (512 KiB)
            max_use = _MIB
    min_use = min(max(_page_align(fs_size // 50), _MIB), 16 * _MIB) if fs_size else _MIB
    min_use = max(min(min_use, max_use), used)
    if keep_free is None:
        keep_free = min(_page_align(fs_size // 20), 4 * _GIB) if fs_size else _MIB
    avail = max(vfs_avail - keep_free, 0)
    limit = min(max(used + avail, min_use), max_use)
    return max(limit - used, 0)


# -- files -----------------------------------------------------------------------------
def parse_conf(text):
    """[(section, key, value)] of a systemd INI file in order: comments (# ;) skipped,
    a trailing backslash continues a line."""
    out, section, pending = [], None, ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if sep:
            out.append((section, key.strip(), value.strip()))
    return out


def dropins(files, dirs, suffix=".conf"):
    """[host path] of the drop-ins in `dirs` (highest priority first): one per file name,
    from the first dir that has it, in lexical order of the names; masked ones left out."""
    chosen = {}
    for d in dirs:
        for name in files.listdir(d):
            if name.endswith(suffix) and name not in chosen:
                chosen[name] = f"{d}/{name}"
    return [chosen[n] for n in sorted(chosen) if not files.masked(chosen[n])]


def _unit_names(unit):
    """The names whose drop-ins apply to `unit`, least specific first: the unit type
    ("service.d"), the "-" prefixes ("a-.service.d" for a-b.service), the template
    ("x@.service.d" for x@1.service), the unit itself (systemd.unit(5))."""
    stem, dot, kind = unit.rpartition(".")
    if not dot:
        return [unit]
    names = [kind]
    base = stem.split("@", 1)[0]
    pieces = base.split("-")
    for i in range(1, len(pieces)):
        names.append("-".join(pieces[:i]) + "-." + kind)
    if "@" in stem:
        names.append(stem.split("@", 1)[0] + "@." + kind)
    names.append(unit)
    return names


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
        main = next((f"{d}/journald.conf" for d in _CONF_DIRS
                     if self.files.isfile(f"{d}/journald.conf")), None)
        return ([main] if main else []) + dropins(self.files,
                                                  [f"{d}/journald.conf.d" for d in _CONF_DIRS])

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
        """[host path] of `unit`'s file and drop-ins in the order systemd applies them
        (no file: drop-ins only; masked: [])."""
        stem, _, kind = unit.rpartition(".")
        template = stem.split("@", 1)[0] + "@." + kind if "@" in stem else None
        main = None
        for d in UNIT_DIRS:
            for name in (unit, template):
                if name and self.files.lexists(f"{d}/{name}"):
                    main = f"{d}/{name}"
                    break
            if main:
                break
        if main and self.files.masked(main):
            return []
        dirs = [f"{d}/{name}.d" for name in _unit_names(unit) for d in UNIT_DIRS]
        return ([main] if main else []) + dropins(self.files, dirs)

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
        available, _ = self.available()
        effective = burst if available is None else burst_modulate(burst, available)
        return RateLimit(float(interval), int(burst), int(effective), source, available)

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
        available, _ = self.available()
        effective = j.burst if available is None else burst_modulate(j.burst, available)
        return RateLimit(j.interval_s, j.burst, int(effective), j.source, available)

    # -- sockets --------------------------------------------------------------------------
    def reaches_journald(self, socket_path):
        """Whether a syslog socket path ends at journald's syslog socket (/dev/log is a
        symlink to it on systemd hosts)."""
        return self._cached(("sock", socket_path),
                            lambda: self.files.real(socket_path) == JOURNAL_DEV_LOG)
