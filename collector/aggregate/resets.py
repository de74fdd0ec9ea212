"""TCP resets per service: counts, classification tallies, idle-before-reset histograms.

Pure: attributed kernel counts and decoded events in, plain dicts out. No I/O. The idle
histogram's buckets: collector/aggregate/idle_hist.py.
"""
from collections import Counter
from dataclasses import dataclass, field

from collector.aggregate.idletimeout import IdleTimeouts, pool_peer
from collector.records.model import RESETS_IDLE_HIST, RESETS_SENT_BY_KIND


@dataclass(frozen=True)
class AttributedResets:
    """One kernel count line (collector.probes.resets.ResetCount) with its service."""
    service: str
    pid: int            # 0 when no process owns it
    comm: str
    direction: str      # "sent" / "received"
    kind: str | None
    state: str | None
    reason: str | None
    count: int
    idle_unknown: int
    idle_hist: tuple


@dataclass
class ServiceResets:
    service: str
    pids: set = field(default_factory=set)
    comms: set = field(default_factory=set)
    sent: int = 0
    received: int = 0
    kinds: Counter = field(default_factory=Counter)          # sent resets by kind
    states: Counter = field(default_factory=Counter)         # "sent:ESTABLISHED" -> n
    reasons: Counter = field(default_factory=Counter)
    idle_unknown: int = 0
    idle_hist: list = field(default_factory=list)

    def add(self, a):
        if a.pid:
            self.pids.add(a.pid)
        if a.comm:
            self.comms.add(a.comm)
        if a.direction == "sent":
            self.sent += a.count
            self.kinds[a.kind or "unknown"] += a.count
        else:
            self.received += a.count
        self.states[f"{a.direction}:{a.state or '-'}"] += a.count
        if a.reason is not None:
            self.reasons[a.reason] += a.count
        self.idle_unknown += a.idle_unknown
        if len(self.idle_hist) < len(a.idle_hist):
            self.idle_hist.extend([0] * (len(a.idle_hist) - len(self.idle_hist)))
        for i, n in enumerate(a.idle_hist):
            self.idle_hist[i] += n

    def merge(self, other):
        self.pids |= other.pids
        self.comms |= other.comms
        self.sent += other.sent
        self.received += other.received
        self.kinds.update(other.kinds)
        self.states.update(other.states)
        self.reasons.update(other.reasons)
        self.idle_unknown += other.idle_unknown
        if len(self.idle_hist) < len(other.idle_hist):
            self.idle_hist.extend([0] * (len(other.idle_hist) - len(self.idle_hist)))
        for i, n in enumerate(other.idle_hist):
            self.idle_hist[i] += n

    def as_dict(self):
        return {
            "service": self.service, "pids": sorted(self.pids), "comms": sorted(self.comms),
            "resets_sent": self.sent, "resets_received": self.received,
            "kinds": dict(self.kinds), "states": dict(self.states), "reasons": dict(self.reasons),
            "idle_unknown": self.idle_unknown, "idle_hist": list(self.idle_hist),
        }


def aggregate_resets(attributed):
    """{service: ServiceResets} from AttributedResets lines of one interval (or more)."""
    out = {}
    for a in attributed:
        if a.count <= 0:
            continue
        out.setdefault(a.service, ServiceResets(a.service)).add(a)
    return out


def idle_mode(hist, nbuckets=None):
    """(bucket, count) of the fullest bucket, or None for an empty histogram."""
    if not hist or not any(hist):
        return None
    b = max(range(len(hist)), key=lambda i: (hist[i], -i))
    return b, hist[b]


def reset_counts_by_service(per_service):
    """{service: (sent, received)}: what `rate` records carry as resets_sent/received."""
    return {s: (r.sent, r.received) for s, r in per_service.items()}


def add_resets(rates, per_service, new_record):
    """Reset counts into one interval's rate records, in place: resets_sent/received on
    every record (with a service's resets, its sent resets by kind and its idle
    histogram: schema 1.10), and a record new_record(name, ServiceResets) appended for
    each service with resets but no log writes. The daemon and snapshot's -p selection
    both use it."""
    by_service = {r["service"]: r for r in rates}
    for rec in rates:
        rec["resets_sent"], rec["resets_received"] = 0, 0
    for name, r in sorted(per_service.items()):
        rec = by_service.get(name)
        if rec is None:
            rec = new_record(name, r)
            rates.append(rec)
        rec["resets_sent"], rec["resets_received"] = r.sent, r.received
        if r.kinds:
            rec[RESETS_SENT_BY_KIND] = dict(r.kinds)
        if r.idle_hist:
            rec[RESETS_IDLE_HIST] = list(r.idle_hist)
    return rates


class EventBudget:
    """At most `limit` reset records per interval; counts what was not sent."""

    def __init__(self, limit):
        self.limit = limit
        self.used = 0
        self.suppressed = 0

    def take(self):
        if self.used < self.limit:
            self.used += 1
            return True
        self.suppressed += 1
        return False

    def next_interval(self):
        """Start a new interval; returns how many records the last one suppressed."""
        suppressed, self.used, self.suppressed = self.suppressed, 0, 0
        return suppressed


class ResetWindow:
    """Accumulates per-service resets and event-derived peers over a snapshot window, and
    the received resets' idle times per peer (`idle`: the idle timeout named,
    collector/aggregate/idletimeout.py, over the whole window)."""

    def __init__(self, max_peers=1000):
        self.services = {}
        self.peers = {}                       # service -> Counter("addr:port" -> n)
        self.max_peers = max_peers
        self.events_seen = 0
        self.events_lost = 0
        self.duration_s = 0.0
        self.idle = IdleTimeouts(window_s=None)

    def add_interval(self, per_service, interval_s, events_lost=0):
        self.duration_s += interval_s
        self.events_lost += events_lost
        for name, r in per_service.items():
            if name in self.services:
                self.services[name].merge(r)
            else:
                mine = ServiceResets(name)
                mine.merge(r)
                self.services[name] = mine

    def add_event(self, service, peer, event=None, ts=0.0):
        """One reset event of service (peer "addr:port"); event (a ResetEvent: direction,
        family, raddr, rport, lport, idle_ms) also feeds `idle` when it was received."""
        self.events_seen += 1
        c = self.peers.setdefault(service, Counter())
        if peer in c or len(c) < self.max_peers:
            c[peer] += 1
        if event is not None and event.direction == "received":
            self.idle.add(ts, service, pool_peer(event.raddr, event.rport, event.lport,
                                                 event.family == 10), event.idle_ms)

    def top(self, n):
        """Services by resets (sent + received), largest first."""
        rows = sorted(self.services.values(), key=lambda r: (-(r.sent + r.received), r.service))
        return rows[:n]

    def totals(self):
        hist = []
        for r in self.services.values():
            if len(hist) < len(r.idle_hist):
                hist.extend([0] * (len(r.idle_hist) - len(hist)))
            for i, n in enumerate(r.idle_hist):
                hist[i] += n
        return {
            "resets_sent": sum(r.sent for r in self.services.values()),
            "resets_received": sum(r.received for r in self.services.values()),
            "idle_hist": hist,
        }
