"""Loss risk: a service logging faster than the next stage keeps (journald's rate limit,
or a destination's configured capacity), so that messages are being thrown away.

Pure: `rate` records in, each at-risk record annotated with `loss_risk` and
`log_loss_risk` alert events out; the limits come from a reader passed in
(collector.host.journald_limits.JournaldLimits or a test double) and time from the
arguments. The rules, and why, are in docs/detection.md, "Loss risk". In short:

- journald, per service (journald limits per unit): the service's journald-bound
  messages (writes to `journald:` paths, and to `syslog:` sockets that end at journald's
  dev-log socket) in the most recent intervals spanning at most RateLimitIntervalSec
  (2% slack for interval jitter; an interval longer than that span counts as
  n / ceil(interval / span)). At risk when that count exceeds the burst after
  journald's disk-space scaling; `certain` when it exceeds twice the burst: journald's
  windows are one RateLimitIntervalSec each, so any span that long meets at most two of
  them and one got more than the burst (if all messages had one priority: journald
  keeps a separate allowance per priority group).
- capacity, per [capacity] glob: the writes/s of every path matching it, summed over
  paths and services, in the interval; at risk above the configured lines/s. Every
  service writing to a matching path gets the entry (and its own alert).
- an alert opens at the first interval at risk and closes after `close_after`
  consecutive intervals without.
"""
import math
from collections import deque
from fnmatch import fnmatchcase

JOURNALD = "journald"
CAPACITY = "capacity"
LOG_LOSS_RISK = "log_loss_risk"       # the alert signal
OPEN, CLOSE = "open", "close"
REASONS = {JOURNALD: "journald_rate_limit", CAPACITY: "capacity"}
JOURNALD_PREFIX, SYSLOG_PREFIX = "journald:", "syslog:"
OTHER_PATH = "(other)"                # collector.aggregate.logrates.OTHER_PATH
SLACK = 1.02                          # interval lengths jitter around the configured one
MAX_HISTORY = 3600                    # intervals kept per service (a lower bound beyond)
CLOSE_AFTER = 3


def limit_key(kind, glob=None):
    """The `limit` label of a risk: "journald", or "capacity:<glob>"."""
    return JOURNALD if kind == JOURNALD else f"{CAPACITY}:{glob}"


def limit_fields(entry):
    """The limit a loss_risk entry judged against (an alert record's `limit`): its `limit`,
    `key`, `allowed_per_s` and (journald) `unit`, `interval_s`, `burst`, `configured_burst`,
    `source` or (capacity) `glob`, `capacity`; not this interval's counts."""
    return {k: v for k, v in entry.items() if k not in ("rate", "paths", "messages",
                                                        "window_s", "certain", "service_rate")}


def window_count(history, span_s):
    """(messages, seconds): a lower bound of the most messages any span of span_s held,
    from [(interval_s, messages)] oldest first: the newest intervals whose lengths add
    up to at most span_s (with SLACK); an interval longer than that alone counts as
    messages / ceil(interval / span)."""
    total, length = 0, 0.0
    for interval_s, n in reversed(history):
        if length + interval_s > span_s * SLACK:
            break
        total += n
        length += interval_s
    if length == 0.0 and history:
        interval_s, n = history[-1]
        return n / math.ceil(interval_s / span_s), span_s
    return total, length


def _globs(capacity):
    """((glob, lines/s), ...) from a mapping or pairs."""
    items = capacity.items() if isinstance(capacity, dict) else capacity
    return tuple((str(g), float(c)) for g, c in items)


class _Risk:
    """One open log_loss_risk alert of one service and limit."""

    def __init__(self, service, key, started, entry):
        self.service, self.key = service, key
        self.started = started
        self.entry = entry               # the latest at-risk loss_risk entry
        self.rate = self.peak = entry["rate"]
        self.intervals = 0
        self.below = 0
        self.ended = None

    def fields(self, state):
        """The body of an `alert` record (collector.records.model.alert_record)."""
        e = self.entry
        body = {
            "state": state, "service": self.service, "signal": LOG_LOSS_RISK,
            "rate": float(self.rate), "baseline": None, "spread": None, "ratio": None,
            "threshold": float(e["allowed_per_s"]), "reason": REASONS[e["limit"]],
            "started": float(self.started), "peak": float(self.peak),
            "intervals": self.intervals,
            "top": {"paths": [{"path": p} for p in e["paths"]]},
            "limit": limit_fields(e),
        }
        if state == CLOSE:
            body.update(ended=float(self.ended), duration_s=float(self.ended - self.started),
                        close_reason="below_limit")
        return body


class RiskEvent:
    __slots__ = ("risk", "state", "ts")

    def __init__(self, state, risk, ts):
        self.state, self.risk, self.ts = state, risk, ts

    def fields(self):
        return self.risk.fields(self.state)


class LossRisk:
    """Feed it every interval with observe(); it annotates the rate records at risk and
    returns the log_loss_risk alerts that opened or closed.

    limits: for_unit(service) -> RateLimit and reaches_journald(socket path) -> bool;
    capacity: [(path glob, lines/s)]."""

    def __init__(self, limits, capacity=(), close_after=CLOSE_AFTER):
        self.limits = limits
        self.capacity = _globs(capacity)
        self._glob_hits = {}       # path -> indices of the capacity globs it matches
        self.close_after = close_after
        self.history = {}          # service -> deque[(interval_s, journald-bound messages)]
        self.open = {}             # (service, limit key) -> _Risk
        self._journald_paths = {}  # path -> journald-bound or not
        # (service, path) -> {limit kinds} it was at risk with since the start: the LOSS
        # column of snapshot's final table (collector.views.table)
        self.marks = {}

    def set_capacity(self, capacity):
        """New [capacity] globs (a SIGHUP): alerts of globs gone close at the next
        interval, as any risk that stopped."""
        self.capacity = _globs(capacity)
        self._glob_hits = {}

    def journald_bound(self, path):
        """Whether messages written to `path` (a rate record's path) go to journald."""
        hit = self._journald_paths.get(path)
        if hit is None:
            if path.startswith(JOURNALD_PREFIX):
                hit = True
            elif path.startswith(SYSLOG_PREFIX):
                hit = bool(self.limits.reaches_journald(path[len(SYSLOG_PREFIX):]))
            else:
                hit = False
            if len(self._journald_paths) > 10000:
                self._journald_paths.clear()
            self._journald_paths[path] = hit
        return hit

    # -- the interval ---------------------------------------------------------------------
    def observe(self, ts, interval_s, rates):
        """One interval ending at ts of interval_s seconds. Adds `loss_risk` (a list) to
        each rate record at risk; returns [RiskEvent], closes before opens."""
        at_risk = {}                      # (service, key) -> entry
        seen = set()
        for rec in rates:
            name = rec.get("service")
            if not isinstance(name, str):
                continue
            seen.add(name)
            n, paths = 0, []
            for p in rec.get("paths") or ():
                if self.journald_bound(p.get("path", "")):
                    n += int(p.get("writes", 0))
                    paths.append(p["path"])
            hist = self.history.get(name)
            if hist is None:
                if not n:
                    continue
                hist = self.history[name] = deque(maxlen=MAX_HISTORY)
            hist.append((float(interval_s), n))
            entry = self._journald(name, hist, paths)
            if entry is not None:
                at_risk[(name, JOURNALD)] = entry
        for name, hist in list(self.history.items()):
            if name in seen:
                continue
            # no rate record: nothing to annotate, but its window may still be over the
            # burst (the alert stays open) or empty (the service is forgotten)
            hist.append((float(interval_s), 0))
            entry = self._journald(name, hist, [])
            if entry is not None:
                at_risk[(name, JOURNALD)] = entry
            elif (name, JOURNALD) not in self.open and not self._window(name, hist)[0]:
                del self.history[name]
        if self.capacity:
            at_risk.update(self._capacities(rates, interval_s))
        by_service = {}
        for (name, _), entry in sorted(at_risk.items()):
            by_service.setdefault(name, []).append(entry)
            for path in entry["paths"]:
                if len(self.marks) < 10000 or (name, path) in self.marks:
                    self.marks.setdefault((name, path), set()).add(entry["limit"])
        for rec in rates:
            entries = by_service.get(rec.get("service"))
            if entries:
                rec["loss_risk"] = entries
        return self._events(ts, interval_s, at_risk)

    def _window(self, name, hist):
        """(messages, span, RateLimit) of the service's journald window; (0, 0, limit)
        when journald does not limit it."""
        limit = self.limits.for_unit(name)
        if not limit.enabled:
            return 0, 0.0, limit
        n, span = window_count(hist, limit.interval_s)
        return n, span, limit

    def _journald(self, name, hist, paths):
        n, span, limit = self._window(name, hist)
        if not limit.enabled:
            return None
        if n <= limit.effective_burst:
            return None
        return {"limit": JOURNALD, "key": JOURNALD, "unit": name,
                "interval_s": float(limit.interval_s), "burst": int(limit.effective_burst),
                "configured_burst": int(limit.burst),
                "allowed_per_s": limit.effective_burst / limit.interval_s,
                "source": limit.source,
                "messages": int(n) if float(n).is_integer() else float(n),
                "window_s": float(span), "rate": n / span if span else 0.0,
                "certain": n > 2 * limit.effective_burst, "paths": sorted(paths)}

    def _globs_of(self, path):
        """The capacity globs `path` matches (cached: a path is matched once)."""
        hit = self._glob_hits.get(path)
        if hit is None:
            hit = () if path == OTHER_PATH else tuple(
                i for i, (glob, _) in enumerate(self.capacity) if fnmatchcase(path, glob))
            if len(self._glob_hits) > 10000:
                self._glob_hits.clear()
            self._glob_hits[path] = hit
        return hit

    def _capacities(self, rates, interval_s):
        """{(service, key): entry} of the [capacity] globs over their lines/s: one pass
        over the paths, summing per glob over paths and services."""
        totals = [0] * len(self.capacity)
        contributors = [{} for _ in self.capacity]
        for rec in rates:
            name = rec.get("service")
            for p in rec.get("paths") or ():
                w = int(p.get("writes", 0))
                if not w:
                    continue
                path = p.get("path", "")
                for i in self._globs_of(path):
                    totals[i] += w
                    mine = contributors[i].setdefault(name, [0, []])
                    mine[0] += w
                    mine[1].append(path)
        out = {}
        for i, (glob, cap) in enumerate(self.capacity):
            rate = totals[i] / interval_s
            if rate <= cap:
                continue
            key = limit_key(CAPACITY, glob)
            for name, (w, paths) in contributors[i].items():
                if isinstance(name, str):
                    out[(name, key)] = {
                        "limit": CAPACITY, "key": key, "glob": glob, "capacity": cap,
                        "allowed_per_s": cap, "rate": rate, "service_rate": w / interval_s,
                        "paths": sorted(paths)}
        return out

    def _events(self, ts, interval_s, at_risk):
        events = []
        for key, risk in list(self.open.items()):
            entry = at_risk.get(key)
            risk.intervals += 1
            if entry is not None:
                if not entry["paths"]:          # a quiet interval: keep where it went
                    entry = dict(entry, paths=risk.entry["paths"])
                risk.entry, risk.rate, risk.below = entry, entry["rate"], 0
                risk.peak = max(risk.peak, entry["rate"])
                continue
            risk.rate = 0.0
            risk.below += 1
            if risk.below >= self.close_after:
                risk.ended = ts
                del self.open[key]
                events.append(RiskEvent(CLOSE, risk, ts))
        for key, entry in sorted(at_risk.items()):
            if key not in self.open:
                risk = self.open[key] = _Risk(key[0], key[1], ts - interval_s, entry)
                events.append(RiskEvent(OPEN, risk, ts))
        return events

    # -- views ----------------------------------------------------------------------------
    def open_risks(self):
        """[(service, limit key)] of the log_loss_risk alerts open now."""
        return sorted(self.open)


def format_risk_event(ev):
    """One line for the daemon's log."""
    r, e = ev.risk, ev.risk.entry
    if e["limit"] == JOURNALD:
        what = (f"journald rate limit: {e['messages']:g} messages in {_secs(e['window_s'])}s, "
                f"burst {e['burst']} per {e['interval_s']:g}s ({e['source']})")
    else:
        what = f"capacity {e['glob']}: {e['rate']:.0f} lines/s, capacity {e['capacity']:g}"
    if ev.state == OPEN:
        sure = "; journald is dropping messages" if e.get("certain") else ""
        return f"loss risk: {r.service} above its {what}{sure}"
    return (f"loss risk over: {r.service} back under its "
            f"{'journald rate limit' if e['limit'] == JOURNALD else 'capacity ' + e['glob']}"
            f" after {_secs(r.ended - r.started)}s")


def _secs(v):
    return f"{v:.2g}" if v < 10 else f"{v:.0f}"
