"""Log-write counts -> per-service rates (pure: no I/O, no clock).

aggregate_interval() turns one interval's LogWrite list into `rate` record bodies
(model.rate_record(host, ts, **body) adds v/type/ts/host). Window accumulates intervals
for `surgewatch snapshot`: totals, rates over the window and shares per service and
per (service, path).

Ordering everywhere: writes descending, ties by name (service, then path) ascending.
"""
import heapq
from collections import Counter
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import eq, itemgetter

from collector.aggregate.health import HealthTotals

OTHERS = "(others)"
# The remainder entry of a rate record's paths (schema 1.3): every path past the top N,
# summed exactly. Real paths are absolute or "journald:...", so the name cannot collide.
OTHER_PATH = "(other)"
DEFAULT_MAX_PATHS = 20


def _by_writes(writes, *names):
    return (-writes, *names)


def _body(seq, interval_s, service, pids, comms, writes, nbytes, paths):
    """One service's `rate` record body (collector.records.model.rate_record)."""
    return {"seq": seq, "interval": float(interval_s), "service": service,
            "pids": sorted(pids), "comms": sorted(comms), "log_writes": writes,
            "log_bytes": nbytes, "log_writes_per_s": writes / interval_s,
            "log_bytes_per_s": nbytes / interval_s, "paths": paths}


def aggregate_interval(writes, seq, interval_s):
    """Rate record bodies, one per service with activity in this interval.

    writes: list[LogWrite] (several entries for the same pid and path are summed);
    seq: interval number (0-based); interval_s: measured interval length (> 0).
    """
    if not interval_s > 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
    services = {}
    for w in writes:
        if w.writes == 0 and w.bytes == 0:
            continue
        svc = services.setdefault(w.service, {"pids": set(), "comms": set(), "paths": {}})
        svc["pids"].add(w.pid)
        svc["comms"].add(w.comm)
        p = svc["paths"].setdefault(w.path, [0, 0, set()])
        p[0] += w.writes
        p[1] += w.bytes
        p[2].add(w.pid)

    bodies = []
    for name, svc in services.items():
        paths = [
            {"path": path, "writes": n, "bytes": b, "pids": sorted(pids)}
            for path, (n, b, pids) in svc["paths"].items()
        ]
        paths.sort(key=lambda p: (-p["writes"], p["path"]))     # _by_writes, inlined: hot
        total_writes = sum(p["writes"] for p in paths)
        total_bytes = sum(p["bytes"] for p in paths)
        bodies.append(_body(seq, interval_s, name, svc["pids"], svc["comms"], total_writes,
                            total_bytes, paths))
    bodies.sort(key=lambda r: _by_writes(r["log_writes"], r["service"]))
    return bodies


_W, _B, _PC, _EXTRA, _SVC, _PATH = (itemgetter(i) for i in (1, 2, 3, 4, 5, 6))


def _pids(accs):
    pcs = set(map(_PC, accs))
    for extra in filter(None, map(_EXTRA, accs)):
        pcs |= extra
    return pcs


def _path_entry(acc):
    extra = acc[4]
    if extra is None:
        pids = [acc[3][0]]
    else:
        pids = sorted({pc[0] for pc in extra} | {acc[3][0]})
    return {"path": acc[6], "writes": acc[1], "bytes": acc[2], "pids": pids}


def _first_by_path(accs, names, n):
    """The n accumulators of accs (their paths: names) with the smallest paths, by path:
    heapq.nsmallest(n, accs, key=path), with the per-element work at C level (heapify over
    the names, then n pops), since a service's thousands of paths often tie at the N-th
    largest count."""
    if len(accs) <= n:
        return sorted(accs, key=_PATH)
    heap = names.copy()
    heapq.heapify(heap)
    chosen = {heapq.heappop(heap) for _ in range(n)}
    out = sorted(compress(accs, map(chosen.__contains__, names)), key=_PATH)
    if len(chosen) < n or len(out) != n:   # a path twice (not from the key cache)
        return heapq.nsmallest(n, accs, key=_PATH)
    return out


def rate_bodies(accs, seq, interval_s, max_paths=DEFAULT_MAX_PATHS):
    """Rate record bodies from per-(service, path) accumulators of one interval.

    accs: sequences [_, writes, bytes, (pid, comm), extra {(pid, comm)} or None, service,
    path] (collector.host.keycache builds them), one per (service, path). Each body holds
    at most max_paths paths (by writes descending, ties by path) and then, if any are
    left, one OTHER_PATH entry with their exact sums, the union of their pids and
    `folded` (how many paths it holds); max_paths 0 or None keeps every path. Totals are
    exact either way. Same fields and order as aggregate_interval().
    """
    if not interval_s > 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
    # Each accumulator is read once, into columns (zip): on a busy host its lists lie
    # scattered in memory, and every further pass over them costs a cache miss per path.
    groups = {}
    if accs:
        cols = list(zip(*accs))
        if all(map(eq, cols[5], repeat(accs[0][5]))):        # one service (stops early)
            groups[accs[0][5]] = (list(accs), cols)
        else:
            by_service = {}
            for acc in accs:
                g = by_service.get(acc[5])
                if g is None:
                    by_service[acc[5]] = [acc]
                else:
                    g.append(acc)
            groups = {name: (group, list(zip(*group))) for name, group in by_service.items()}
    by_path = itemgetter(6)
    bodies = []
    for name, (group, (_, ws, bs, firsts, extras, _, names)) in groups.items():
        total_writes = sum(ws)
        total_bytes = sum(bs)
        if max_paths and len(group) > max_paths:
            # per path only C-level passes (compress, heapq, Counter) over the columns: a
            # service may have 10,000 paths. The N-th largest count, the paths above it,
            # then the ties at it by path name.
            floor = heapq.nlargest(max_paths, ws)[-1]
            top = list(compress(group, map(floor.__lt__, ws)))
            top.sort(key=by_path)
            top.sort(key=_W, reverse=True)       # stable: ties stay by path
            tied = list(map(floor.__eq__, ws))
            top += _first_by_path(list(compress(group, tied)), list(compress(names, tied)),
                                  max_paths - len(top))
            # the (pid, comm)s of the whole group and of the paths not kept, from one count
            # of every accumulator's first (pid, comm) less the kept ones' (a count above 0:
            # a path not kept has it), plus the sets of the few paths with more writers
            counted = Counter(firsts)
            pcs = set(counted)
            counted.subtract(map(_PC, top))
            rest_pcs = {pc for pc, n in counted.items() if n > 0}
            several = list(compress(group, extras))
            if several:
                kept = set(map(id, top))
                for acc in several:
                    pcs |= acc[4]
                    if id(acc) not in kept:
                        rest_pcs |= acc[4]
            paths = [_path_entry(a) for a in top]
            paths.append({"path": OTHER_PATH,
                          "writes": total_writes - sum(map(_W, top)),
                          "bytes": total_bytes - sum(map(_B, top)),
                          "pids": sorted({pc[0] for pc in rest_pcs}),
                          "folded": len(group) - len(top)})
        else:
            pcs = _pids(group)
            group.sort(key=by_path)
            group.sort(key=_W, reverse=True)
            paths = [_path_entry(a) for a in group]
        bodies.append(_body(seq, interval_s, name, {pc[0] for pc in pcs},
                            {pc[1] for pc in pcs}, total_writes, total_bytes, paths))
    bodies.sort(key=lambda r: _by_writes(r["log_writes"], r["service"]))
    return bodies


@dataclass
class PathTotal:
    """One (service, path) over the window."""

    service: str
    path: str
    pids: list
    writes: int
    bytes: int
    writes_per_s: float
    bytes_per_s: float
    share: float          # this row's share of all log writes in the window (0..1)
    folded: int = 0       # rows folded into an "(others)" remainder row, else 0


@dataclass
class ServiceTotal:
    """One service over the window."""

    service: str
    pids: list
    comms: list
    writes: int
    bytes: int
    writes_per_s: float
    bytes_per_s: float
    share: float          # this service's share of all log writes in the window (0..1)
    paths: list = field(default_factory=list)   # [PathTotal], writes desc
    folded: int = 0       # services folded into an "(others)" remainder row, else 0


class Window:
    """Accumulates intervals (rate record bodies + interval length) for a snapshot."""

    def __init__(self):
        self.duration_s = 0.0
        self.intervals = 0
        self._services = {}   # service -> {"pids", "comms", "paths": {path: [w, b, pids]}}
        self._stats = None    # HealthTotals once a stats record came

    # -- input --------------------------------------------------------------------
    def add_interval(self, rates, interval_s, stats=None):
        """Add one interval: its rate bodies/records (maybe none) and its measured length.

        stats: that interval's stats record (or its body), optional.
        """
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.duration_s += float(interval_s)
        self.intervals += 1
        for r in rates:
            svc = self._services.setdefault(r["service"], {"pids": set(), "comms": set(), "paths": {}})
            svc["pids"].update(r["pids"])
            svc["comms"].update(r["comms"])
            for p in r["paths"]:
                acc = svc["paths"].setdefault(p["path"], [0, 0, set()])
                acc[0] += p["writes"]
                acc[1] += p["bytes"]
                acc[2].update(p["pids"])
        if stats is not None:
            if self._stats is None:
                self._stats = HealthTotals()
            self._stats.add(stats)

    def add_writes(self, writes, seq, interval_s, stats=None):
        """Convenience: aggregate_interval() then add_interval(). Returns the rate bodies."""
        bodies = aggregate_interval(writes, seq, interval_s)
        self.add_interval(bodies, interval_s, stats)
        return bodies

    # -- output -------------------------------------------------------------------
    @property
    def total_writes(self):
        return sum(acc[0] for svc in self._services.values() for acc in svc["paths"].values())

    @property
    def total_bytes(self):
        return sum(acc[1] for svc in self._services.values() for acc in svc["paths"].values())

    def _rate(self, n):
        return n / self.duration_s if self.duration_s > 0 else 0.0

    def _share(self, n, total):
        return n / total if total else 0.0

    def _path_total(self, service, path, acc, total):
        w, b, pids = acc
        return PathTotal(service, path, sorted(pids), w, b, self._rate(w), self._rate(b),
                         self._share(w, total))

    def services(self, top=None):
        """[ServiceTotal] by writes desc; with top, the rest folded into one "(others)" row."""
        total = self.total_writes
        out = []
        for name, svc in self._services.items():
            paths = [self._path_total(name, path, acc, total) for path, acc in svc["paths"].items()]
            paths.sort(key=lambda p: _by_writes(p.writes, p.path))
            w = sum(p.writes for p in paths)
            b = sum(p.bytes for p in paths)
            out.append(ServiceTotal(name, sorted(svc["pids"]), sorted(svc["comms"]), w, b,
                                    self._rate(w), self._rate(b), self._share(w, total), paths))
        out.sort(key=lambda s: _by_writes(s.writes, s.service))
        if top is None or len(out) <= top:
            return out
        kept, rest = out[:top], out[top:]
        w = sum(s.writes for s in rest)
        b = sum(s.bytes for s in rest)
        kept.append(ServiceTotal(
            OTHERS,
            sorted({p for s in rest for p in s.pids}),
            sorted({c for s in rest for c in s.comms}),
            w, b, self._rate(w), self._rate(b), self._share(w, total), [], folded=len(rest)))
        return kept

    def rows(self, top=None):
        """[PathTotal] for every (service, path), by writes desc, ties by service then path.

        With top, keeps that many rows and folds the rest into one "(others)" row, so the
        shares of the returned rows still add up to 1.
        """
        total = self.total_writes
        out = [self._path_total(name, path, acc, total)
               for name, svc in self._services.items() for path, acc in svc["paths"].items()]
        out.sort(key=lambda r: _by_writes(r.writes, r.service, r.path))
        if top is None or len(out) <= top:
            return out
        kept, rest = out[:top], out[top:]
        w = sum(r.writes for r in rest)
        b = sum(r.bytes for r in rest)
        kept.append(PathTotal(OTHERS, "", sorted({p for r in rest for p in r.pids}), w, b,
                              self._rate(w), self._rate(b), self._share(w, total),
                              folded=len(rest)))
        return kept

    def stats(self):
        """Collector health summed over the window, or None if no stats were added."""
        if self._stats is None:
            return None
        return self._stats.summary(self.duration_s)
