"""The collector's own health summed over a window of `stats` records (pure), for the
summary of `surgewatch snapshot` (collector.aggregate.logrates.Window)."""

_STATS_SUM = ("evictions", "lost_events", "unresolved_writes", "cpu_s")
# Gauges and identity fields of a stats record; any other numeric field is a per-interval
# counter (e.g. a probe's own loss counter) and is summed, so no loss goes unreported.
_STATS_NOT_SUMMED = {"v", "type", "ts", "host", "seq", "interval", "drain_ms", "keys",
                     "map_capacity", "rss_bytes"}


class HealthTotals:
    """Sums, maxima and the last map capacity of the stats records added."""

    def __init__(self):
        self._t = {k: 0 for k in _STATS_SUM}
        self._t.update(intervals=0, drain_ms_total=0.0, drain_ms_max=0.0, keys_max=0,
                       map_capacity=0, rss_bytes_max=0)

    def add(self, s):
        """One interval's stats record (or its body)."""
        t = self._t
        t["intervals"] += 1
        for k in _STATS_SUM:
            t[k] += s[k]
        t["drain_ms_total"] += s["drain_ms"]
        t["drain_ms_max"] = max(t["drain_ms_max"], s["drain_ms"])
        t["keys_max"] = max(t["keys_max"], s["keys"])
        t["map_capacity"] = s["map_capacity"]
        t["rss_bytes_max"] = max(t["rss_bytes_max"], s["rss_bytes"])
        for k, v in s.items():
            if (k not in _STATS_NOT_SUMMED and k not in _STATS_SUM
                    and isinstance(v, (int, float)) and not isinstance(v, bool)):
                t[k] = t.get(k, 0) + v

    def summary(self, duration_s):
        """The totals, with the mean drain time and CPU % over duration_s."""
        t = dict(self._t)
        n = t["intervals"]
        t["drain_ms_mean"] = t.pop("drain_ms_total") / n
        t["cpu_percent"] = 100.0 * t["cpu_s"] / duration_s if duration_s else 0.0
        return t
