"""Reading probe maps the same way in every probe: strings, health counters."""
import ctypes

# after a count-map flip, how long programs still running on the old map get to finish
# (a tracepoint program runs for microseconds)
GRACE_S = 0.005


def cstr(raw):
    """A fixed-size C char array as text (up to the first NUL, bad bytes replaced)."""
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


class HealthCounters:
    """Deltas of a per-CPU array of event counters (lost events, full maps...)."""

    def __init__(self, size):
        self._seen = [0] * size

    def delta(self, bpf_map):
        now = [bpf_map.percpu_u64_sum(ctypes.c_int(i)) for i in range(len(self._seen))]
        out = [n - s for n, s in zip(now, self._seen)]
        self._seen = now
        return out
