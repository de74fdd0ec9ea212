"""The records of one stream read into what `surgewatch plot` draws: per interval the
log-write and reset rates of every service, the idle times of the `reset` records, and
the alert spans with their labels (collector/commands/plot.py shapes and draws them).
Fields that are no usable value (wrong type, inf, nan, a time no date can be made of)
are left out; names are escaped before anything draws them.

A gap in the records is where the next interval starts more than GAP_INTERVALS of the
run's interval (the `meta` record's, else the interval's own length) after the previous
one ended: a daemon that was not running (a restart takes its start-up time), records
dropped, a host asleep. Intervals of one daemon abut (each is measured from the previous
drain), so a shorter hole is a restart's start-up or a dropped record or two and is
bridged; a longer one is drawn as a gap (Series.stretches)."""
import math

from collector.aggregate.signals import (
    LOG_BYTES,
    LOG_WRITES,
    RESETS_RECEIVED,
    RESETS_SENT,
)
from collector.records.intervals import IntervalGrouper
from collector.views.text import escape

PANEL_OF = {LOG_WRITES: "log", LOG_BYTES: "log", RESETS_SENT: "sent",
            RESETS_RECEIVED: "received"}
SHORT = {LOG_WRITES: "log writes", LOG_BYTES: "log bytes", RESETS_SENT: "resets sent",
         RESETS_RECEIVED: "resets received"}
GAP_INTERVALS = 3


class Series:
    """Per-interval rates of every service, reset idle times, and alert spans."""

    def __init__(self):
        self.ends = []            # interval end times (unix s)
        self.lengths = []         # interval lengths (s)
        self.rates = {"log": {}, "sent": {}, "received": {}}   # panel -> service -> {i: /s}
        self.has_resets = False
        self.nominal = []         # the run's configured interval at each interval (s)
        self.idle = {}            # (i, service, direction, log2 bucket) -> [n, sum log2 ms]
        self.unknown_at = {}      # i -> reset records without an idle time (no socket...)
        self.unrecorded_at = {}   # i -> resets counted but without a `reset` record
        self.alerts = []          # [service, panel, start, end or None, signal, ratio or why]
        self.hosts = set()
        self.records = 0
        self._open = {}           # (service, signal) -> index in alerts
        self._run_interval = None    # the latest meta record's interval
        self._grouper = IntervalGrouper(self._interval, self._other)

    @property
    def idle_unknown(self):
        return sum(self.unknown_at.values())

    @property
    def resets_unrecorded(self):
        return sum(self.unrecorded_at.values())

    def add(self, rec):
        self.records += 1
        self._grouper.add(rec)

    def _other(self, rec):
        kind = rec.get("type")
        if kind == "meta":
            if isinstance(rec.get("host"), str):
                self.hosts.add(escape(rec["host"]))
            length = rec.get("interval")
            self._run_interval = float(length) if _finite(length) and length > 0 else None
            self._restart()
        elif kind == "alert":
            self._alert(rec)
        elif kind == "reset":
            self._reset(rec)

    def _interval(self, rates, stats):
        if isinstance(stats.get("host"), str):
            self.hosts.add(escape(stats["host"]))
        ts, length = stats.get("ts"), stats.get("interval")
        if _when(ts) is None or not _finite(length) or length <= 0 \
                or _when(ts - length) is None:
            return
        i = len(self.ends)
        for k in ("reset_records_suppressed", "resets_events_lost"):
            if _finite(stats.get(k)):
                self.unrecorded_at[i] = self.unrecorded_at.get(i, 0) + int(stats[k])
        self.ends.append(float(ts))
        self.lengths.append(float(length))
        self.nominal.append(self._run_interval or float(length))
        for rec in rates:
            name = rec.get("service")
            if not isinstance(name, str):
                continue
            name = escape(name)             # names are drawn: no control characters
            w = rec.get("log_writes_per_s")
            if _finite(w) and w > 0:
                self.rates["log"].setdefault(name, {})[i] = float(w)
            for panel in ("sent", "received"):
                n = rec.get(f"resets_{panel}")
                if n is None:
                    continue
                self.has_resets = True
                if _finite(n) and n > 0:
                    self.rates[panel].setdefault(name, {})[i] = n / length

    def _reset(self, rec):
        service, direction, idle = rec.get("service"), rec.get("direction"), rec.get("idle_ms")
        if not isinstance(service, str) or direction not in ("sent", "received"):
            return
        service = escape(service)
        if not _finite(idle) or idle < 0:
            i = len(self.ends)
            self.unknown_at[i] = self.unknown_at.get(i, 0) + 1
            return
        lg = math.log2(max(float(idle), 0.5))     # < 1 ms drawn at 0.5 ms
        key = (len(self.ends), service, direction, math.floor(lg))
        cell = self.idle.setdefault(key, [0, 0.0])
        cell[0] += 1
        cell[1] += lg

    def _alert(self, rec):
        service, signal = rec.get("service"), rec.get("signal")
        if not isinstance(service, str) or not isinstance(signal, str) \
                or signal not in PANEL_OF:
            return
        service = escape(service)
        panel, key = PANEL_OF[signal], (service, signal)
        ratio = _ratio(rec)
        started = _time(rec, "started")
        if rec.get("state") == "open" and started is not None:
            self._open[key] = len(self.alerts)
            self.alerts.append([service, panel, started, None, signal, ratio])
        elif rec.get("state") == "close":
            end = _time(rec, "ended")
            if end is None:
                return
            idx = self._open.pop(key, None)
            if idx is None:           # opened before the source starts
                self.alerts.append([service, panel, started if started is not None else end,
                                    end, signal, ratio])
            else:
                a = self.alerts[idx]
                a[3] = end
                a[5] = _larger(a[5], ratio)

    def _restart(self):
        """A new run (a meta record): alerts its predecessor left open end with its last
        interval; the new daemon knows nothing of them and never closes them."""
        for idx in self._open.values():
            if self.ends and self.alerts[idx][3] is None:
                self.alerts[idx][3] = max(self.ends[-1], self.alerts[idx][2])
        self._open = {}

    def stretches(self):
        """[(first index, last index + 1)] of the runs of intervals without a gap."""
        out, a = [], 0
        for i in range(1, len(self.ends)):
            hole = self.ends[i] - self.lengths[i] - self.ends[i - 1]
            if hole > GAP_INTERVALS * max(self.nominal[i - 1], self.nominal[i]):
                out.append((a, i))
                a = i
        if self.ends:
            out.append((a, len(self.ends)))
        return out

    def start(self, i):
        """Unix start time of interval i."""
        return self.ends[i] - self.lengths[i]

    def window(self, a, b):
        """A Series of intervals a..b-1 only (re-numbered from 0), with the alerts that
        overlap them."""
        w = Series()
        w.ends, w.lengths, w.nominal = self.ends[a:b], self.lengths[a:b], self.nominal[a:b]
        for panel, per_service in self.rates.items():
            for name, points in per_service.items():
                kept = {i - a: v for i, v in points.items() if a <= i < b}
                if kept:
                    w.rates[panel][name] = kept
        w.idle = {(k[0] - a,) + k[1:]: v for k, v in self.idle.items() if a <= k[0] < b}
        w.unknown_at = {i - a: n for i, n in self.unknown_at.items() if a <= i < b}
        w.unrecorded_at = {i - a: n for i, n in self.unrecorded_at.items() if a <= i < b}
        t0, t1 = self.start(a), self.ends[b - 1]
        w.alerts = [list(x) for x in self.alerts
                    if x[2] <= t1 and (x[3] is None or x[3] >= t0)]
        w.has_resets, w.hosts, w.records = self.has_resets, self.hosts, self.records
        return w

    def spans(self, panel):
        """[(service, start, end, label)] of one panel; open alerts end with the data.
        Overlapping alerts of one service (log writes and bytes) are one span whose
        label names each signal with its largest ratio to the baseline."""
        last = self.ends[-1] if self.ends else None
        raw = sorted(((a[0], a[2], a[3] if a[3] is not None else last, a[4], a[5])
                      for a in self.alerts if a[1] == panel), key=lambda a: a[:2])
        out = []
        for service, start, end, signal, ratio in raw:
            if end is None:
                continue
            end = max(end, start)           # a close stamped before its start: a line
            what = (signal, ratio)
            if out and out[-1][0] == service and start <= out[-1][2]:
                out[-1][2] = max(end, out[-1][2])
                out[-1][3].append(what)
            else:
                out.append([service, start, end, [what]])
        return [(s, a, b, _span_label(s, whats)) for s, a, b, whats in out]


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v, most=1e15):
    """A finite number below `most`: larger rates (or idle times) are no measurement."""
    return _num(v) and math.isfinite(v) and abs(v) < most


def _when(v):
    """v when it is a unix time a date can be made of (0 to year 5000), else None."""
    return float(v) if _finite(v) and 0 <= v < 95e9 else None


def _time(rec, field):
    """rec[field] (else its ts) as unix seconds, or None when neither is a usable time."""
    t = _when(rec.get(field))
    return t if t is not None else _when(rec.get("ts"))


def _ratio(rec):
    """The alert's largest ratio to its baseline (the peak's, known on close), or why
    there is none: "new service" (no baseline yet) or "from 0/s" (a baseline of 0)."""
    base, ratio = rec.get("baseline"), rec.get("ratio")
    if rec.get("reason") == "new_service":     # its baseline is its own first intervals
        return "new service"
    if rec.get("reason") == "above_host_limit":  # schema 1.9: judged against the host's limit
        return "over host limit"
    if _num(base) and base > 0 and _num(rec.get("peak")):
        return max(float(rec["peak"]) / base, float(ratio) if _num(ratio) else 0.0)
    if _num(ratio):
        return float(ratio)
    return "from 0/s" if _num(base) else "new service"


def _fmt_ratio(r):
    if isinstance(r, str):
        return f"({r})"            # "log writes (new service)", not "log writes new service"
    return f"{r:.0f}x" if r >= 10 else f"{r:.1f}x"


def _larger(a, b):
    """The larger of two alert ratios; a number beats a reason."""
    if isinstance(a, str):
        return b
    return a if isinstance(b, str) else max(a, b)


def _span_label(service, whats):
    best = {}
    for signal, ratio in whats:
        best[signal] = _larger(best[signal], ratio) if signal in best else ratio
    parts = [f"{SHORT[s]} {_fmt_ratio(r)}" for s, r in sorted(best.items())]
    return f"alert {service}: {', '.join(parts)}"
