"""Who gets a slot when more services want one than fit (pure: no I/O, no clock).

Any local user can make services for free: a process name per write, a cgroup per
process in a delegated subtree. Wherever services are bounded (the `rate` records of an
interval, the detector's tracked services, Prometheus' service labels) they are ranked
by who owns them and by volume, never by name or by who came first, and what does not
fit is summed exactly into one `(other)` (docs/detection.md, "Slots"):

1. protected owners first: system units ("system") and containers ("container"), the
   names no unprivileged user can make, by volume;
2. then every other owner ("uid:N", "unknown") with at most `per_owner` slots each, by
   volume: one user's thousand cheap names take `per_owner` slots, not all of them;
3. slots still free go to the rest by volume (a host with few users keeps them all).

Ties by name, so the answer is deterministic. The owners come from
collector.host.services (ServiceResolver.owner).
"""
import heapq

from collector.aggregate.logrates import OTHER_PATH
from collector.records.model import RESETS_IDLE_HIST, RESETS_SENT_BY_KIND

OTHER = "(other)"          # the remainder service; a process name "(other)" is "comm:(other)"
PROTECTED = ("system", "container")
MIXED = "mixed"            # the owner of the (other) record
DEFAULT_MAX_SERVICES = 100    # `rate` records per interval before the rest is folded
DEFAULT_PER_OWNER = 20        # slots one unprotected owner takes before others are served
OTHER_PIDS = 100              # pids listed on the (other) record (the smallest)
SWAP_FACTOR = 2.0             # a newcomer takes an equal-class label only when this much louder


def protected(owner):
    return owner in PROTECTED


def rank(entries, limit, per_owner=DEFAULT_PER_OWNER):
    """The names that get one of `limit` slots, in rank order.

    entries: iterable of (name, owner, volume). limit 0 or None: every name.
    """
    entries = list(entries)
    if not limit or len(entries) <= limit:
        return [e[0] for e in sorted(entries, key=_order)]
    first = sorted((e for e in entries if protected(e[1])), key=_order)[:limit]
    kept = [e[0] for e in first]
    if len(kept) < limit:
        held = {}
        rest = []
        for e in sorted((e for e in entries if not protected(e[1])), key=_order):
            n = held.get(e[1], 0)
            if per_owner and n >= per_owner:
                rest.append(e)
                continue
            held[e[1]] = n + 1
            kept.append(e[0])
            if len(kept) == limit:
                break
        else:
            kept += [e[0] for e in rest[:limit - len(kept)]]
    return kept


def _order(e):
    return (-e[2], e[0])


# counts a `rate` record may carry beyond log writes (resets probe): summed into (other)
SUMMED = ("resets_sent", "resets_received", "conns_accepted", "conns_connected",
          "tcp_bytes_out")


def volume(rec):
    """What a record weighs for a slot: its log writes, resets and new connections."""
    return rec.get("log_writes", 0) + sum(rec.get(k, 0) or 0 for k in SUMMED[:4])


def fold_rates(recs, owners, limit=DEFAULT_MAX_SERVICES, per_owner=DEFAULT_PER_OWNER):
    """(records kept, the (other) body or None): at most `limit` of one interval's `rate`
    records (or bodies), ranked by rank() on their volume(); the rest summed exactly by
    other_body(). owners: {service: owner}; every record gets its `owner` ("unknown"
    when not in owners). Kept records keep their order."""
    for r in recs:
        r["owner"] = owners.get(r["service"], "unknown")
    if not limit or len(recs) <= limit:
        return recs, None
    keep = set(rank(((r["service"], r["owner"], volume(r)) for r in recs), limit, per_owner))
    return [r for r in recs if r["service"] in keep], \
        other_body([r for r in recs if r["service"] not in keep])


def other_body(rest):
    """One `rate` body (model.rate_record's arguments, then `extra`: the SUMMED counts
    any of them carried, their sent resets by kind and idle histograms) summing `rest`
    exactly: log writes and bytes, one (other) path entry; pids and comms listed up to
    OTHER_PIDS (the smallest); owner "mixed", `folded` = how many services it sums."""
    first = rest[0]
    writes = sum(r["log_writes"] for r in rest)
    nbytes = sum(r["log_bytes"] for r in rest)
    interval_s = first["interval"]
    pids = heapq.nsmallest(OTHER_PIDS, {p for r in rest for p in r["pids"]})
    comms = sorted({c for r in rest for c in r["comms"]})[:OTHER_PIDS]
    paths = sum(sum(p.get("folded", 1) for p in r["paths"]) for r in rest)
    body = {"seq": first["seq"], "interval": interval_s, "service": OTHER, "pids": pids,
            "comms": comms, "log_writes": writes, "log_bytes": nbytes,
            "log_writes_per_s": writes / interval_s, "log_bytes_per_s": nbytes / interval_s,
            "paths": [{"path": OTHER_PATH, "writes": writes, "bytes": nbytes, "pids": pids,
                       "folded": paths}] if paths else [],
            "owner": MIXED, "folded": len(rest)}
    extra = {k: sum(r.get(k, 0) or 0 for r in rest) for k in SUMMED
             if any(k in r for r in rest)}
    kinds, hist = {}, []
    for r in rest:
        for kind, n in (r.get(RESETS_SENT_BY_KIND) or {}).items():
            kinds[kind] = kinds.get(kind, 0) + n
        for i, n in enumerate(r.get(RESETS_IDLE_HIST) or ()):
            if i == len(hist):
                hist.append(0)
            hist[i] += n
    if kinds:
        extra[RESETS_SENT_BY_KIND] = kinds
    if hist:
        extra[RESETS_IDLE_HIST] = hist
    return body, extra


def choose_victim(incumbents, owner, volume, per_owner=DEFAULT_PER_OWNER,
                  factor=SWAP_FACTOR):
    """A bounded label table is full and a new label (owner, volume this interval)
    wants in: the label it takes the slot of, or None (the newcomer goes to (other)).

    incumbents: iterable of (label, owner, score), score the label's recent volume.
    The victim is the weakest incumbent: unprotected before protected, an owner over
    `per_owner` labels before one within it, then the lowest score, then by label.
    A protected newcomer takes any unprotected slot; an owner within its share takes
    a slot of an owner over its share; otherwise the newcomer must be `factor` times
    louder than the victim (no flapping between two names of the same volume), and an
    owner already holding `per_owner` labels only ever takes one of its own.
    """
    incumbents = list(incumbents)
    if not incumbents:
        return None
    held = {}
    for _, o, _ in incumbents:
        held[o] = held.get(o, 0) + 1

    def over(o):
        return not protected(o) and bool(per_owner) and held[o] > per_owner

    def weakest(cands):
        return min(cands, key=lambda e: (protected(e[1]), not over(e[1]), e[2], e[0]),
                   default=None)

    new_prot = protected(owner)
    if not new_prot and per_owner and held.get(owner, 0) >= per_owner:
        own = weakest(e for e in incumbents if e[1] == owner)
        return own[0] if own is not None and volume > factor * own[2] else None
    victim = weakest(incumbents)
    if new_prot and not protected(victim[1]):
        return victim[0]
    if not new_prot and protected(victim[1]):
        return None
    if over(victim[1]):
        return victim[0]
    return victim[0] if volume > factor * victim[2] else None
