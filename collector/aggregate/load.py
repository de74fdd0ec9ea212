"""A service's TCP load in one interval (the denominators of load-normalised rates), from
the resets probe's per-process counts (collector.probes.reset_counts.LoadCount, attributed to a
service by collector/pipeline/resets.py), and its place in the `rate` records. Pure.
"""
from dataclasses import dataclass, field

from collector.aggregate.signals import (
    CONNS_ACCEPTED,
    CONNS_CONNECTED,
    TCP_BYTES_OUT,
    load_ratios,
)


@dataclass(frozen=True)
class AttributedLoad:
    service: str
    pid: int
    comm: str
    accepted: int
    connected: int
    tcp_bytes: int


@dataclass
class ServiceLoad:
    service: str
    pids: set = field(default_factory=set)
    comms: set = field(default_factory=set)
    accepted: int = 0
    connected: int = 0
    tcp_bytes: int = 0

    def add(self, a):
        self.pids.add(a.pid)
        self.comms.add(a.comm)
        self.accepted += a.accepted
        self.connected += a.connected
        self.tcp_bytes += a.tcp_bytes


def aggregate_load(attributed):
    """{service: ServiceLoad} of one interval's AttributedLoad lines."""
    out = {}
    for a in attributed:
        if a.accepted or a.connected or a.tcp_bytes:
            out.setdefault(a.service, ServiceLoad(a.service)).add(a)
    return out


def add_load(rates, per_service, new_record, tcp_bytes=True):
    """Load counts into one interval's rate records, in place: conns_accepted,
    conns_connected (and tcp_bytes_out when the kernel counts bytes) on every record, and a
    record new_record(name, ServiceLoad) appended for each service with load but no record
    yet (a busy service that logs nothing is the best ratio there is). Before add_resets
    (the new records get reset fields too), then add_ratios."""
    by_service = {r["service"]: r for r in rates}
    for name, load in sorted(per_service.items()):
        if name not in by_service:
            by_service[name] = new_record(name, load)
            rates.append(by_service[name])
    for rec in rates:
        load = per_service.get(rec["service"])
        rec[CONNS_ACCEPTED] = load.accepted if load else 0
        rec[CONNS_CONNECTED] = load.connected if load else 0
        if tcp_bytes:
            rec[TCP_BYTES_OUT] = load.tcp_bytes if load else 0
    return rates


def add_ratios(rates):
    """Each record's load ratios (collector.aggregate.signals.load_ratios), in place: once
    its log, reset and load counts are all in."""
    for rec in rates:
        rec.update(load_ratios(rec))
    return rates


@dataclass
class _Totals:
    accepted: int = 0
    connected: int = 0
    tcp_bytes: int = 0
    log_writes: int = 0
    log_bytes: int = 0

    @property
    def conns(self):
        return self.accepted + self.connected


class LoadWindow:
    """Load and logs per service over a window (snapshot's "TCP load" section): fed each
    interval's rate records, rows() the busiest by connections."""

    def __init__(self):
        self.duration_s = 0.0
        self.services = {}
        self.bytes_counted = False      # some record had tcp_bytes_out: the kernel counts

    def add_interval(self, rates, interval_s):
        self.duration_s += float(interval_s)
        for r in rates:
            if CONNS_ACCEPTED not in r:
                continue
            self.bytes_counted |= TCP_BYTES_OUT in r
            conns = (r.get(CONNS_ACCEPTED) or 0) + (r.get(CONNS_CONNECTED) or 0)
            if not conns and not r.get(TCP_BYTES_OUT):
                continue
            t = self.services.setdefault(r["service"], _Totals())
            t.accepted += r.get(CONNS_ACCEPTED) or 0
            t.connected += r.get(CONNS_CONNECTED) or 0
            t.tcp_bytes += r.get(TCP_BYTES_OUT) or 0
            t.log_writes += r.get("log_writes") or 0
            t.log_bytes += r.get("log_bytes") or 0

    def rows(self, top=20):
        """[(service, _Totals)], most connections first (then TCP bytes, name)."""
        items = sorted(self.services.items(),
                       key=lambda kv: (-kv[1].conns, -kv[1].tcp_bytes, kv[0]))
        return items[:top]
