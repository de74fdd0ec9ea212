"""Comparing two profiles (collector/aggregate/profile.py), service by service, on the
load-normalised ratios where both sides measured load, else on absolute rates.

Pure: profile dicts in, a result dict out. The rules are in docs/detection.md ("The
gate", "Basis"); the report is collector/commands/compare.py.
"""
import fnmatch
import math

from collector.aggregate.profile import STATS
from collector.aggregate.signals import (
    CONNS,
    LOG_BYTES,
    LOG_BYTES_PER_TCP_KIB,
    LOG_WRITES,
    LOG_WRITES_PER_CONN,
    RESETS_PER_CONN,
    RESETS_RECEIVED,
    RESETS_SENT,
    SIGNALS,
)

AUTO, ABSOLUTE, PER_CONNECTION = "auto", "absolute", "per_connection"
BASES = (AUTO, ABSOLUTE, PER_CONNECTION)
MIN_CONNS = 100      # connections of the current side a ratio needs to be judged


def side_of(doc):
    """Where a profile's rates come from: {"origin": "prometheus" (a fleet, each rate a
    host's: collector/aggregate/fleet.py) or "local" (this file's builder, each rate one
    host's per-interval), "basis", "hosts"}."""
    fleet = doc.get("basis") == "per_host"
    hosts = doc.get("hosts")
    return {"origin": "prometheus" if fleet else "local",
            "basis": "per_host" if fleet else "per_interval",
            "hosts": len(hosts) if isinstance(hosts, list) else 0}


def has_load(doc):
    return CONNS in doc["signals"]


def _cell(b, c, floor_rate, floor, max_ratio, basis):
    """b, c: baseline and current values; floor_rate: the current absolute rate that must
    be above floor for the cell to exceed (so a ratio keeps --min-rate's meaning)."""
    ratio = c / b if b > 0 else (None if c == 0 else math.inf)
    exceeds = floor_rate > floor and (b == 0 or c / b > max_ratio)
    return {"baseline": b, "current": c, "ratio": ratio, "exceeds": exceeds, "basis": basis}


def _basis(name, bsvc, csvc, basis, loads, min_conns):
    """(basis of one service, why not per connection or None)."""
    if basis == ABSOLUTE:
        return ABSOLUTE, "--basis absolute"
    if not loads[0] or not loads[1]:
        return ABSOLUTE, f"no load in the {'baseline' if not loads[0] else 'current'} profile"
    if name not in bsvc or name not in csvc:
        return ABSOLUTE, "in one profile only"
    b, c = bsvc[name], csvc[name]
    if LOG_WRITES_PER_CONN not in b:
        return ABSOLUTE, "no connections in the baseline"
    conns = c.get("conns", 0)
    if LOG_WRITES_PER_CONN not in c or conns < min_conns:
        return ABSOLUTE, f"{conns:g} connections in the current window, fewer than {min_conns:g}"
    return PER_CONNECTION, None


def _per_connection(b, c, signals, stat, max_ratio, min_rate, min_bytes_rate):
    """The cells of a service judged per connection: each ratio both sides have, the
    absolute signals without one, and conns/s shown as the load (never exceeds)."""
    cells = {}
    c_rate = {s: c[s][stat] if s in c else 0.0 for s in signals}
    cells[LOG_WRITES_PER_CONN] = _cell(b[LOG_WRITES_PER_CONN][stat],
                                       c[LOG_WRITES_PER_CONN][stat], c_rate[LOG_WRITES],
                                       min_rate, max_ratio, PER_CONNECTION)
    if LOG_BYTES_PER_TCP_KIB in b and LOG_BYTES_PER_TCP_KIB in c:
        cells[LOG_BYTES_PER_TCP_KIB] = _cell(
            b[LOG_BYTES_PER_TCP_KIB][stat], c[LOG_BYTES_PER_TCP_KIB][stat],
            c_rate[LOG_BYTES], min_bytes_rate, max_ratio, PER_CONNECTION)
    else:
        cells[LOG_BYTES] = _cell(b[LOG_BYTES][stat], c_rate[LOG_BYTES], c_rate[LOG_BYTES],
                                 min_bytes_rate, max_ratio, ABSOLUTE)
    if RESETS_PER_CONN in b and RESETS_PER_CONN in c:
        resets = c_rate.get(RESETS_SENT, 0.0) + c_rate.get(RESETS_RECEIVED, 0.0)
        cells[RESETS_PER_CONN] = _cell(b[RESETS_PER_CONN][stat], c[RESETS_PER_CONN][stat],
                                       resets, min_rate, max_ratio, PER_CONNECTION)
    else:
        for sig in (RESETS_SENT, RESETS_RECEIVED):
            if sig in signals:
                cells[sig] = _cell(b[sig][stat], c_rate[sig], c_rate[sig], min_rate,
                                   max_ratio, ABSOLUTE)
    load = _cell(b[CONNS][stat], c[CONNS][stat], 0.0, 0.0, max_ratio, "load")
    cells[CONNS] = dict(load, exceeds=False)
    return cells


def compare(base, cur, max_ratio=3.0, min_rate=10.0, min_bytes_rate=10240.0, stat="mean",
            basis=AUTO, min_conns=MIN_CONNS, services=()):
    """Compare two profiles service by service (matched by name); with `services` (globs
    on the whole name, as `tail -s`) only the services of either profile matching one:
    the gate of one service on a shared host. `services_unmatched`: globs matching none.

    Basis per service (docs/detection.md): per connection when both profiles measured
    load, the service has connections on both sides and at least min_conns on the current
    one (basis auto or per_connection), else absolute. On either basis a value exceeds
    when the current absolute rate is above the minimum (min_rate; min_bytes_rate for log
    bytes) and the current value is more than max_ratio x the baseline's (a service new
    in `cur` has a baseline of 0: any rate above the minimum exceeds). Vanished services
    are reported, never a failure. Signals only one profile recorded (resets) are not
    compared. Returns {"ok", "rows", "basis" (per_connection when both profiles have load
    and basis is not absolute, else absolute), ...}; rows sorted by service.
    """
    if stat not in STATS:
        raise ValueError(f"stat must be one of {STATS}")
    if basis not in BASES:
        raise ValueError(f"basis must be one of {BASES}")
    loads = (has_load(base), has_load(cur))
    if basis == PER_CONNECTION and not all(loads):
        raise ValueError(f"the {'baseline' if not loads[0] else 'current'} profile has no "
                         "load (connections): record it with the resets probe on")
    signals = [s for s in SIGNALS if s in base["signals"] and s in cur["signals"]]
    rows = []
    bsvc, csvc = base["services"], cur["services"]
    names = sorted(set(bsvc) | set(csvc))
    unmatched = [g for g in services if not any(fnmatch.fnmatchcase(n, g) for n in names)]
    if services:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in services)]
    for name in names:
        status = "new" if name not in bsvc else ("gone" if name not in csvc else "")
        used, why = _basis(name, bsvc, csvc, basis, loads, min_conns)
        if used == PER_CONNECTION:
            cells = _per_connection(bsvc[name], csvc[name], signals, stat, max_ratio,
                                    min_rate, min_bytes_rate)
        else:
            cells = {}
            for sig in signals:
                b = bsvc[name][sig][stat] if name in bsvc else 0.0
                c = csvc[name][sig][stat] if name in csvc else 0.0
                floor = min_bytes_rate if sig == LOG_BYTES else min_rate
                cells[sig] = _cell(b, c, c, floor, max_ratio, ABSOLUTE)
        rows.append({"service": name, "status": status, "basis": used, "basis_note": why,
                     "signals": cells, "exceeds": any(x["exceeds"] for x in cells.values())})
    skipped = [s for s in SIGNALS if (s in base["signals"]) != (s in cur["signals"])]
    # overall: the basis the comparison ran on; a service that fell back says so in its row
    overall = PER_CONNECTION if basis != ABSOLUTE and all(loads) else ABSOLUTE
    return {"ok": not any(r["exceeds"] for r in rows), "stat": stat, "max_ratio": max_ratio,
            "min_rate": min_rate, "min_bytes_rate": min_bytes_rate, "min_conns": min_conns,
            "basis": overall, "basis_requested": basis, "signals": signals,
            "signals_not_compared": skipped, "rows": rows, "services": list(services),
            "services_unmatched": unmatched,
            "sides": {"baseline": side_of(base), "current": side_of(cur)}}
