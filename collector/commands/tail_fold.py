"""`surgewatch tail`'s reset folding: in a terminal a service's `reset` records of one
interval become one line (collector/views/recordlines.format_reset_fold) instead of one
per reset, so the alert lines of a reset storm stay on the screen; `-v` shows each.

The daemon writes an interval's records together: its `rate` records, then its `reset`
records, its `alert` records and last its `stats` record (docs/stream.md). So a folded
line is written when the resets of an interval end: at the next record that is not a
reset (whether or not the filters show it), at a reset of another interval, at the end
of the input, or when a follow finds nothing new.
"""
from collector.views.recordlines import format_reset_fold


def _k(v):
    """v as a dict key: a field of a record from anywhere may be a list or a map."""
    return v if isinstance(v, (str, int, float, type(None))) else repr(v)


class ResetFold:
    def __init__(self):
        self.groups = {}        # service -> [shown reset records], first seen first
        self.key = None         # (host, seq) of the held resets
        self.rates = {}         # (host, service) -> (seq, interval, resets counted)
        self.lengths = {}       # host -> interval length of its meta record

    def see(self, rec, shown):
        """Every record read, in order; shown: it passed the filters. Returns the folded
        lines to write before rec; True as the second value when rec is held (a reset)."""
        kind = rec.get("type")
        host = _k(rec.get("host"))
        if kind == "reset":
            key = (host, _k(rec.get("seq")))
            lines = self.flush() if key != self.key else []
            self.key = key
            if shown:
                self.groups.setdefault(_k(rec.get("service")), []).append(rec)
            return lines, True
        lines = self.flush()
        if kind == "rate":
            counted = sum(rec.get(k) for k in ("resets_sent", "resets_received")
                          if isinstance(rec.get(k), int))
            self.rates[(host, _k(rec.get("service")))] = (_k(rec.get("seq")),
                                                          rec.get("interval"), counted)
        elif kind == "meta":
            self.lengths[host] = rec.get("interval")
        return lines, False

    def flush(self):
        """The held resets as lines, one per service (in the order first seen)."""
        if not self.groups:
            return []
        host, seq = self.key
        lines = []
        for service, resets in self.groups.items():
            rate_seq, interval, counted = self.rates.get((host, service), (None, None, None))
            if rate_seq != seq:         # no rate record of this interval was read
                interval, counted = self.lengths.get(host), None
            lines.append(format_reset_fold(resets, interval, counted))
        self.groups = {}
        return lines
