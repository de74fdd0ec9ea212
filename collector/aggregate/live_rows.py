"""The live view's rows (pure: interval data in, rows out; no terminal).

LiveModel takes each interval's `rate` records (log writes plus resets_sent/received),
its per-service resets (collector.aggregate.resets.ServiceResets, for the idle
histograms) and the alerts open after it, and keeps per service: the rate *now* (the last
interval), the window average, reset totals, and the idle histogram of the last
RECENT_INTERVALS intervals. rows() sorts and filters them for the view.
"""
from collections import deque
from dataclasses import dataclass
from fnmatch import fnmatchcase

from collector.aggregate.loglost import LOG_LOST
from collector.aggregate.lossrisk import LOG_LOSS_RISK
from collector.aggregate.idle_hist import bucket_label
from collector.aggregate.resets import idle_mode
from collector.aggregate.signals import LOG_BYTES, LOG_WRITES, RESETS_RECEIVED, RESETS_SENT

RECENT_INTERVALS = 10      # "recent resets": the idle bucket is judged over these
SORTS = ("now", "avg", "bytes", "resets", "name")
# the short name of each alerting signal in the ALERT column
SIGNAL_NAMES = {LOG_WRITES: "writes", LOG_BYTES: "bytes", RESETS_SENT: "sent",
                RESETS_RECEIVED: "recv", LOG_LOSS_RISK: "loss", LOG_LOST: "lost"}


@dataclass(frozen=True)
class LiveRow:
    service: str
    writes_now: float          # log writes/s in the last interval
    writes_avg: float          # log writes/s over the window
    bytes_now: float           # log bytes/s in the last interval
    sent_now: float            # resets sent/s in the last interval
    received_now: float        # resets received/s in the last interval
    sent: int                  # resets sent in the window
    received: int              # resets received in the window
    idle: str | None = None    # the idle-before-reset bucket holding most recent resets
    idle_share: float = 0.0    # its share of the recent resets with a known idle time
    alerts: tuple = ()         # SIGNAL_NAMES of the signals alerting now ("lost": journald
                               # dropped some, an open log_lost alert; "loss": at
                               # loss risk in the last interval, docs/detection.md)
    loss_risk: tuple = ()      # the limits ("journald", "capacity") it went over then


class _Acc:
    __slots__ = ("bytes", "now", "received", "sent", "writes")

    def __init__(self):
        self.writes = self.bytes = self.sent = self.received = 0
        self.now = (0, 0, 0, 0)    # the last interval's writes, bytes, sent, received


def matches(service, pattern):
    """The live filter: a pattern with * ? [ is a glob on the whole name, anything else a
    case-insensitive substring; an empty pattern matches everything."""
    if not pattern:
        return True
    if any(c in pattern for c in "*?["):
        return fnmatchcase(service, pattern)
    return pattern.lower() in service.lower()


def _key(sort):
    if sort == "now":
        return lambda r: (-r.writes_now, -(r.sent_now + r.received_now), -r.writes_avg,
                          r.service)
    if sort == "avg":
        return lambda r: (-r.writes_avg, -r.writes_now, r.service)
    if sort == "bytes":
        return lambda r: (-r.bytes_now, -r.writes_now, r.service)
    if sort == "resets":
        return lambda r: (-(r.sent_now + r.received_now), -(r.sent + r.received), r.service)
    if sort == "name":
        return lambda r: r.service
    raise ValueError(f"unknown sort {sort!r} (one of {', '.join(SORTS)})")


class LiveModel:
    def __init__(self, recent=RECENT_INTERVALS):
        self.duration_s = 0.0
        self.last_s = 0.0
        self.intervals = 0
        self._services = {}
        self._recent = deque(maxlen=recent)     # per interval: {service: idle_hist}
        self._alerts = {}                       # service -> signal names alerting
        self._risks = {}                        # service -> limits at risk, last interval

    def add_interval(self, rates, resets, interval_s, alerts=()):
        """rates: the interval's `rate` records; resets: {service: ServiceResets};
        interval_s: its length (> 0); alerts: (service, signal) pairs open now."""
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.duration_s += float(interval_s)
        self.last_s = float(interval_s)
        self.intervals += 1
        for acc in self._services.values():
            acc.now = (0, 0, 0, 0)
        self._risks = {}
        for r in rates:
            for entry in r.get("loss_risk") or ():
                self._risks.setdefault(r["service"], set()).add(entry.get("limit", "?"))
            now = (r.get("log_writes", 0), r.get("log_bytes", 0),
                   r.get("resets_sent", 0), r.get("resets_received", 0))
            if not any(now) and not r.get(LOG_LOST) and r["service"] not in self._services:
                continue          # load only (schema 1.5): nothing this view shows
            acc = self._services.setdefault(r["service"], _Acc())
            acc.now = tuple(a + b for a, b in zip(acc.now, now))
            acc.writes += now[0]
            acc.bytes += now[1]
            acc.sent += now[2]
            acc.received += now[3]
        self._recent.append({name: list(r.idle_hist) for name, r in resets.items()
                             if any(r.idle_hist)})
        self._alerts = {}
        for service, signal in alerts:
            self._alerts.setdefault(service, set()).add(SIGNAL_NAMES.get(signal, signal))

    def _idle(self, service):
        hist = []
        for iv in self._recent:
            h = iv.get(service, ())
            if len(hist) < len(h):
                hist.extend([0] * (len(h) - len(hist)))
            for i, n in enumerate(h):
                hist[i] += n
        mode = idle_mode(hist)
        if mode is None:
            return None, 0.0
        return bucket_label(mode[0], len(hist)), mode[1] / sum(hist)

    def _row(self, name, acc):
        last, window = self.last_s or 1.0, self.duration_s or 1.0
        idle, share = self._idle(name)
        risks = self._risks.get(name, set())
        alerting = self._alerts.get(name, set()) | ({SIGNAL_NAMES[LOG_LOSS_RISK]} if risks
                                                     else set())
        order = [s for s in SIGNAL_NAMES.values() if s in alerting]
        return LiveRow(name, acc.now[0] / last, acc.writes / window, acc.now[1] / last,
                       acc.now[2] / last, acc.now[3] / last, acc.sent, acc.received,
                       idle, share, tuple(order), tuple(sorted(risks)))

    def rows(self, sort="now", pattern="", top=None):
        """[LiveRow] of services matching `pattern` (matches()), ordered by `sort`
        (SORTS), at most `top` of them."""
        key = _key(sort)
        out = [self._row(n, a) for n, a in self._services.items() if matches(n, pattern)]
        out.sort(key=key)
        return out if top is None else out[:top]

    def count(self, pattern=""):
        """Services matching `pattern` (for "showing N of M")."""
        return sum(1 for n in self._services if matches(n, pattern))
