"""Records grouped into intervals, the one way every reader does it: a stream is meta,
then per interval its `rate` (and other) records closed by one `stats` record; a meta
record (a restart) drops rates whose interval never closed. Pure: no I/O."""


class IntervalGrouper:
    """Feed records in stream order; on_interval(rates, stats) runs when a stats record
    closes an interval, on_other(rec) for every record that is neither rate nor stats."""

    def __init__(self, on_interval, on_other=None):
        self.on_interval, self.on_other = on_interval, on_other
        self._pending = []

    def add(self, rec):
        kind = rec.get("type")
        if kind == "rate":
            self._pending.append(rec)
            return
        if kind == "stats":
            rates, self._pending = self._pending, []
            self.on_interval(rates, rec)
            return
        if kind == "meta":
            self._pending = []
        if self.on_other is not None:
            self.on_other(rec)


def intervals(records):
    """(rates, stats) per closed interval, in stream order."""
    out = []
    grouper = IntervalGrouper(lambda rates, stats: out.append((rates, stats)))
    for rec in records:
        grouper.add(rec)
        while out:
            yield out.pop(0)
