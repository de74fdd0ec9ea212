"""Sums over the records a `surgewatch run` wrote (dicts, as decoded from its stream)."""

LOSS_FIELDS = ("unresolved_writes", "lost_writes", "evictions", "lost_events",
               "fd_walk_failed")


def writes_by_path(records, path):
    """(writes, bytes) for `path` summed over the rate records."""
    w = b = 0
    for r in records:
        if r.get("type") != "rate":
            continue
        for p in r.get("paths", ()):
            if p.get("path") == path:
                w += p.get("writes", 0)
                b += p.get("bytes", 0)
    return w, b


def losses(records):
    """The stats records' loss counters, summed."""
    tot = dict.fromkeys(LOSS_FIELDS, 0)
    for r in records:
        if r.get("type") == "stats":
            for k in LOSS_FIELDS:
                tot[k] += r.get(k, 0) or 0
    return tot
