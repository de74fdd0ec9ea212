"""journald's rate-limit arithmetic, as systemd computes it: the limit a unit's messages
get (RateLimit), the burst scaled by the journal's free space (burst_modulate) and the
space journald counts as free (journal_available). Pure; the numbers come from the
host's files through collector/host/journald_limits.py. Rules: docs/detection.md,
"Loss risk".
"""
import math
from dataclasses import dataclass

DEFAULT_INTERVAL_S = 30.0        # journald.conf(5): RateLimitIntervalSec=30s
DEFAULT_BURST = 10000            # RateLimitBurst=10000
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


def scaled(interval_s, burst, source, available):
    """The RateLimit of `interval_s` and `burst`, the burst scaled by `available` bytes
    (None: unknown, the burst as configured)."""
    effective = burst if available is None else burst_modulate(burst, available)
    return RateLimit(float(interval_s), int(burst), int(effective), source, available)
