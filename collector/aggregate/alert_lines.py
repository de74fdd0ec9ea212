"""The log line of an alert event (the daemon's log, snapshot's notes on stderr): signal,
rate, what it is judged against (baseline, profile, host limit or a new service's
floor) and where it comes from (top path or peer, the idle timeout named)."""
from collector.aggregate.alerts import NEW_SERVICE, OPEN
from collector.aggregate.priors import ABOVE_HOST_LIMIT, ABOVE_PROFILE, limit_text
from collector.aggregate.signals import LOG_BYTES, LOG_WRITES, RESETS_RECEIVED, RESETS_SENT


def _num(v):
    if v >= 1e6:
        return f"{v / 1e6:.3g}M"
    if v >= 1e4:
        return f"{v / 1e3:.3g}k"
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def format_event(ev):
    """One line for the daemon's log."""
    a = ev.alert
    unit = "lines/s" if a.signal == LOG_WRITES else (
        "bytes/s" if a.signal == LOG_BYTES else "resets/s")
    what = {LOG_WRITES: "log writes", LOG_BYTES: "log bytes", RESETS_SENT: "resets sent",
            RESETS_RECEIVED: "resets received"}[a.signal]
    if ev.state == OPEN:
        if a.reason == NEW_SERVICE:
            base = f"new service, no baseline yet; floor {_num(a.threshold)} {unit}"
        elif a.reason == ABOVE_HOST_LIMIT:
            base = (f"over {limit_text(a.extra['limit'])} {_num(a.threshold)} {unit}; "
                    f"no baseline of its own yet")
        else:
            ratio = f"{a.ratio:.1f}x " if a.ratio is not None else ""
            of = "profile" if a.reason == ABOVE_PROFILE else "baseline"
            base = f"{ratio}{of} {_num(a.baseline)} {unit}"
        where = ""
        top = a.top or {}
        if top.get("paths"):
            where = f"; top: {top['paths'][0]['path']}"
        elif top.get("peers"):
            where = f"; top peer: {top['peers'][0]['peer']}"
        if top.get("idle_timeouts"):
            where += f"; {top['idle_timeouts'][0]['line']}"
        return f"alert open: {a.service} {what} {_num(a.rate)} {unit} ({base}){where}"
    return (f"alert closed ({a.close_reason}): {a.service} {what} now {_num(a.rate)} {unit}, "
            f"peak {_num(a.peak)} over {a.ended - a.started:.0f}s")
