"""Test doubles of the probe contract (collector/probes/base.py) as the Collector, the
resets stage and the interval loop use it: counts the test sets, drained into the same
typed results the real probes return; an eventfd that never polls readable stands for
the ring buffer (no events)."""
import os

from collector.probes.logwrite_counts import LogWriteDrain, RawCounts
from collector.probes.reset_counts import ResetDrain

WRITE_HEALTH = {"counts_full": 0, "events_lost": 0, "fdwalk_failed": 0, "iov_truncated": 0}
RESET_HEALTH = {"events_lost": 0, "counts_full": 0, "no_owner": 0, "owners_full": 0,
                "events_over_budget": 0}


class ProbeDouble:
    name = label = None
    health_counters = {}

    def __init__(self):
        self.attached = []
        self.on_event = None
        self.missed = 0              # runs_missed() gives it once, as the kernel's delta
        self._fd = os.eventfd(0, os.EFD_CLOEXEC)

    def meta(self):
        return {"enabled": True, "tracepoints": list(self.attached)}

    def flip(self):
        pass

    def collect(self):
        return self._drained()

    def drain(self):
        self.flip()
        return self.collect()

    def health(self):
        return dict(self.health_counters)

    def runs_missed(self):
        n, self.missed = self.missed, 0
        return n

    def poll_fd(self):
        return self._fd

    def consume(self):
        pass

    def poll(self, _timeout_ms):
        pass

    def take_links(self):
        return []

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        self.close()


class WriteProbeDouble(ProbeDouble):
    """The log-write probe: each drain returns `counts` (WriteCount tuples) in the
    kernel's layout, and `lost_by_uid` (None: a probe without the per-uid loss maps)."""
    name, label = "logwrites", "log-write probe"
    health_counters = WRITE_HEALTH
    max_keys = 16

    def __init__(self, counts=()):
        super().__init__()
        self.counts, self.lost_by_uid = list(counts), None

    def _drained(self):
        return LogWriteDrain(RawCounts.of(self.counts), self.lost_by_uid)

    def set_verdict(self, dev, gen, ino, is_log):
        pass


class ResetProbeDouble(ProbeDouble):
    """The resets probe: each drain returns `counts` (ResetCount) and `loads` (LoadCount)."""
    name, label = "resets", "resets probe"
    health_counters = RESET_HEALTH
    tcp_bytes_hook = None

    def __init__(self, counts=(), loads=()):
        super().__init__()
        self.counts, self.loads = list(counts), list(loads)

    def _drained(self):
        return ResetDrain(list(self.counts), list(self.loads))

    def set_event_budget(self, n):
        pass
