"""The Prometheus output's bounded label tables (pure: collector/sinks/prometheus.py holds
the lock and the clock).

Label cardinality is bounded (docs/operations.md, "Prometheus"):
- at most `max_services` service label values, held by owner and volume
  (collector/aggregate/slots.py choose_victim: system units and containers first, at
  most a share per unprivileged owner, then the louder); a label that loses its slot
  has its totals added to service="(other)", so every counter stays exact; a service
  that gets no slot is counted under service="(other)";
- per service at most `max_paths_per_service` path label values (first come); further
  paths of that service are counted under path="(other)";
- a service or path with no activity for `label_idle_s` gives its label back (its
  series disappear from the next scrape; activity after that starts it again from 0,
  which Prometheus's rate() and increase() read as a counter reset).
The per-service counters are exact whatever the folding of paths.
"""
from collector.aggregate.slots import DEFAULT_PER_OWNER, OTHER, choose_victim


class BoundedLabels:
    """label -> value, at most `limit` labels plus OTHER, idle labels expire."""

    def __init__(self, limit, idle_s, make):
        self.limit, self.idle_s, self.make = limit, idle_s, make
        self.items = {}            # label -> [value, last active time]

    def get(self, label, now):
        item = self.items.get(label)
        if item is None:
            if label != OTHER and \
                    sum(1 for k in self.items if k != OTHER) >= self.limit:
                label = OTHER
                item = self.items.get(label)
            if item is None:
                item = self.items[label] = [self.make(), now]
        item[1] = now
        return item[0]

    def expire(self, now):
        for label in [k for k, (_, last) in self.items.items() if now - last >= self.idle_s]:
            del self.items[label]


# a service label's score: its writes + resets per interval, averaged with this weight
# on the past (an EWMA; a new label starts at its first interval's volume)
SCORE_DECAY = 0.9


class ServiceSlots(BoundedLabels):
    """Service labels: a full table gives a slot by owner and volume (slots.py), never
    to whoever came first; an evicted label's totals go to OTHER, exactly."""

    def __init__(self, limit, idle_s, make, per_owner=DEFAULT_PER_OWNER):
        super().__init__(limit, idle_s, make)
        self.per_owner = per_owner
        self.meta = {}             # label -> [owner, score, volume this interval]

    def get(self, label, now, owner=None, volume=0):
        """owner None: keep what the label's rate records said (resets details)."""
        item = self.items.get(label)
        if item is None and label != OTHER and \
                sum(1 for k in self.items if k != OTHER) >= self.limit:
            victim = choose_victim(((k, m[0], max(m[1], m[2]))
                                    for k, m in self.meta.items()
                                    if k in self.items and k != OTHER),
                                   owner or "unknown", volume, self.per_owner)
            if victim is None:
                label = OTHER
                item = self.items.get(label)
            else:
                self._fold(victim, now)
        if item is None:
            item = self.items[label] = [self.make(), now]
        item[1] = now
        m = self.meta.get(label)
        if m is None:
            m = self.meta[label] = [owner or "unknown", float(volume), 0.0]
        if label == OTHER:
            m[0] = "mixed"
        elif owner is not None:
            m[0] = owner
        m[2] += volume
        return item[0]

    def _fold(self, victim, now):
        svc, _ = self.items.pop(victim)
        self.meta.pop(victim, None)
        other = self.items.get(OTHER)
        if other is None:
            other = self.items[OTHER] = [self.make(), now]
            self.meta[OTHER] = ["mixed", 0.0, 0.0]
        other[0].absorb(svc, now)
        other[1] = now

    def decay(self):
        for m in self.meta.values():
            m[1] = SCORE_DECAY * m[1] + (1.0 - SCORE_DECAY) * m[2]
            m[2] = 0.0

    def expire(self, now):
        super().expire(now)
        for label in [k for k in self.meta if k not in self.items]:
            del self.meta[label]


class ServiceTotals:
    def absorb(self, o, now):
        """Add another service's totals (a label that lost its slot)."""
        self.writes += o.writes
        self.bytes += o.bytes
        for d in self.resets:
            self.resets[d] += o.resets[d]
        if o.conns is not None:
            if self.conns is None:
                self.conns = {"accepted": 0, "connected": 0}
            for d in self.conns:
                self.conns[d] += o.conns[d]
        if o.tcp_bytes is not None:
            self.tcp_bytes = (self.tcp_bytes or 0) + o.tcp_bytes
        if o.lost is not None:
            self.lost = (self.lost or 0) + o.lost
        for k, n in o.kinds.items():
            self.kinds[k] = self.kinds.get(k, 0) + n
        if o.idle_hist:
            if len(self.idle_hist) < len(o.idle_hist):
                self.idle_hist += [0] * (len(o.idle_hist) - len(self.idle_hist))
            for i, n in enumerate(o.idle_hist):
                self.idle_hist[i] += n
        self.idle_count += o.idle_count
        pv = self.paths.get(OTHER, now)
        for path_value, _ in o.paths.items.values():
            pv[0] += path_value[0]
            pv[1] += path_value[1]

    def __init__(self, max_paths, idle_s):
        self.writes = self.bytes = 0
        self.resets = {"sent": 0, "received": 0}
        self.conns = None          # {"accepted", "connected"} once a record carried load
        self.tcp_bytes = None      # once a record carried tcp_bytes_out
        self.lost = None           # once a record carried log_lost (journald's drops)
        self.kinds = {}            # sent resets by kind
        self.idle_hist = []        # cumulative idle-before-reset bucket counts (24)
        self.idle_count = 0
        self.paths = BoundedLabels(max_paths, idle_s, lambda: [0, 0])
