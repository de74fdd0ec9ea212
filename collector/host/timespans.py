"""Time spans as systemd writes them (systemd.time(7)): "30s", "1min 30s", "500ms", "1.5h".

The one parser of durations: journald.conf's and units' *IntervalSec= settings take the
whole syntax (collector/host/journald_limits.py); the command line's durations (tail
--since, record --range/--step) a narrower form of it, flag_duration(): one term, the
units s, m, h, d. In host/ beside systemd's file syntax (systemd_conf.py), not in config/:
config/ imports host/.
"""
import math
import re

UNITS = {  # seconds per unit, systemd.time(7)
    "us": 1e-6, "usec": 1e-6, "µs": 1e-6, "μs": 1e-6,
    "ms": 1e-3, "msec": 1e-3,
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 604800.0, "week": 604800.0, "weeks": 604800.0,
    "M": 2629800.0, "month": 2629800.0, "months": 2629800.0,
    "y": 31557600.0, "year": 31557600.0, "years": 31557600.0,
}
FLAG_UNITS = ("s", "m", "h", "d")     # what the command line's durations take

# one term: a number ("12", "1.5", ".5"; not "1." nor "1.2.3", as systemd) and its unit;
# a term without a unit must be followed by a space or the end ("1h30" is 1h + 30 s)
_TERM = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?|\.[0-9]+)(\s*[^\s0-9.]+|(?=\s|$))")


def parse_timespan(text, default_unit=1.0, units=UNITS, one_term=False, infinity=True):
    """Seconds of a time span; ValueError otherwise.

    default_unit: the seconds of a bare number ("2"), None when a bare number is not a
    span; units: the unit names taken (of UNITS); one_term: "1min 30s" not taken;
    infinity: "infinity" is math.inf."""
    s = text.strip()
    if not s:
        raise ValueError("empty time span")
    if infinity and s == "infinity":
        return math.inf
    total, pos = 0.0, 0
    while pos < len(s):
        m = _TERM.match(s, pos)
        if m is None or (one_term and pos):
            raise ValueError(f"{text!r} is not a time span (like 30s, 1min, 500ms)")
        number, unit = m.group(1), m.group(2).strip()
        if unit and unit not in units:
            raise ValueError(f"{text!r}: unknown time unit {unit!r}")
        if not unit and default_unit is None:
            raise ValueError(f"{text!r}: a number without a unit is not a time span")
        total += float(number) * (UNITS[unit] if unit else default_unit)
        pos = m.end()
    return total


def flag_duration(text, bare=True):
    """Seconds of a command-line duration: "90s", "10m", "2h", "1d" (and "90", seconds,
    when `bare`); ValueError otherwise."""
    return parse_timespan(text, default_unit=1.0 if bare else None, units=FLAG_UNITS,
                          one_term=True, infinity=False)
