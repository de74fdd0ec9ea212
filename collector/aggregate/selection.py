"""Which services and processes `surgewatch snapshot -s/--service` and `-p/--pid` keep
(pure: one interval's data in, the kept part out).

-s PATTERN (repeatable): services whose name matches any of the globs (fnmatch, the whole
name, case-sensitive: as `surgewatch tail --service`). -p PID (repeatable): log writes of
those processes only, exact (from the interval's per-process counts); reset counts are
kept per service, so -p keeps the resets of the services whose sockets those processes
own. Both given: a service must match a pattern and the writes be those pids'. The
open-connection inventory (--resets, --json) is kept the same way, by pid exactly.
"""
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import NamedTuple

from collector.aggregate.logrates import aggregate_interval
from collector.aggregate.resets import add_resets


class Selected(NamedTuple):
    rates: list            # `rate` record bodies (with resets_sent/received)
    resets: dict           # service -> ServiceResets
    reset_records: list    # `reset` records
    reset_events: list     # (service, ResetEvent)


@dataclass(frozen=True)
class Selection:
    services: tuple = ()   # glob patterns; empty: every service
    pids: tuple = ()       # pids; empty: every process

    @property
    def everything(self):
        return not self.services and not self.pids

    def service_ok(self, name):
        return not self.services or any(fnmatchcase(name, p) for p in self.services)

    def select(self, rates, resets, reset_records=(), reset_events=(), writes=None, seq=0,
               interval_s=1.0):
        """The kept part of one interval. rates: its `rate` records; resets: {service:
        ServiceResets}; writes: its [LogWrite] (needed with pids; seq and interval_s
        are then the interval's)."""
        if self.everything:
            return Selected(list(rates), dict(resets), list(reset_records),
                            list(reset_events))
        pids = set(self.pids)
        if pids:
            resets = {n: r for n, r in resets.items() if r.pids & pids}
            rates = aggregate_interval([w for w in writes if w.pid in pids], seq, interval_s)
            add_resets(rates, resets, lambda name, r: {
                "seq": seq, "interval": float(interval_s), "service": name,
                "pids": sorted(r.pids & pids), "comms": [], "log_writes": 0, "log_bytes": 0,
                "log_writes_per_s": 0.0, "log_bytes_per_s": 0.0, "paths": []})
        rates = [r for r in rates if self.service_ok(r["service"])]
        kept = {r["service"] for r in rates}
        return Selected(rates, {n: r for n, r in resets.items() if n in kept},
                        [r for r in reset_records if r.get("service") in kept],
                        [(s, ev) for s, ev in reset_events if s in kept])

    def inventory(self, inv):
        """The open-connection inventory ({service: [row]}, host.sockdiag.inventory) of
        the selected services and pids, or None when there is none."""
        if inv is None or self.everything:
            return inv
        pids = set(self.pids)
        out = {}
        for service, rows in inv.items():
            kept = [r for r in rows if not pids or r["pid"] in pids]
            if kept and self.service_ok(service):
                out[service] = kept
        return out
