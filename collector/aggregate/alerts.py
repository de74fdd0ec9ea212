"""Log floods and reset storms: per service and signal, a baseline, and alerts that open
and close against it.

Pure: `rate` (and `reset`) records in, alert events out; time comes in as arguments.
The algorithm, its defaults and why are in docs/detection.md. In short, per service and
signal (log writes/s, log bytes/s, resets sent/s, resets received/s):

- the baseline is the median and MAD of the last `window` intervals (a quiet interval
  counts as 0), learnt only while no alert is open;
- an interval is *above* when its rate exceeds the largest of the signal's floor,
  k x median, median + z x sigma (sigma = 1.4826 MAD) and burst_factor x p98 of the
  window; a service still warming up (fewer than `warmup` intervals) is judged against
  the signal's `new_floor` only, and only when it appeared after the detector's own
  warm-up (at start every service is learning);
- what a service starts with (collector/aggregate/priors.py): an interval in which it
  alone is over a host limit (journald's, `[capacity]`) is not learnt, and one still
  learning is above in it; a service in a configured profile starts with the profile's
  figure as its baseline and is judged from its first interval;
- `open_after` consecutive above intervals open an alert; it closes after `close_after`
  consecutive intervals below hysteresis x the threshold it opened at, or is accepted as
  the new normal after `relearn_after` intervals (the baseline is then the rates seen
  during the alert).

The log line of an event: collector/aggregate/alert_lines.py.
"""
from collections import deque
from dataclasses import dataclass

from collector.aggregate.baseline import RobustWindow
from collector.aggregate.idletimeout import IdleTimeouts
from collector.aggregate.priors import ABOVE_HOST_LIMIT, ABOVE_PROFILE, host_limit, \
    host_limit_fields
from collector.aggregate.slots import protected
from collector.aggregate.signals import LOG_BYTES, LOG_WRITES, RESETS_RECEIVED, SIGNALS, \
    DetectorConfig, contributors, signal_value

OPEN, CLOSE = "open", "close"
# why an alert opened
ABOVE_BASELINE, NEW_SERVICE = "above_baseline", "new_service"
# why an alert closed
RECOVERED, RELEARNED = "recovered", "relearned"


class Alert:
    """One alert of one service and signal, from open to close."""

    def __init__(self, service, signal, started, rate, baseline, sigma, threshold, reason,
                 top, extra=None):
        self.service, self.signal = service, signal
        self.started = started            # start of the first interval above, unix s
        self.rate = rate                  # rate of the latest interval
        self.baseline = baseline          # median of the window (None: no baseline yet)
        self.sigma = sigma
        self.threshold = threshold        # the threshold it opened at (fixed while open)
        self.reason = reason
        self.top = top                    # contributors of the latest above interval
        self.peak = rate
        self.intervals = 0                # intervals since it opened
        self.ended = None
        self.close_reason = None
        self.extra = extra or {}          # `limit` (above_host_limit), `profile` (above_profile)

    @property
    def ratio(self):
        if not self.baseline:
            return None
        return self.rate / self.baseline

    def fields(self, state):
        """The body of an `alert` record (see docs/stream.md)."""
        body = {
            "state": state, "service": self.service, "signal": self.signal,
            "rate": float(self.rate), "baseline": self.baseline, "spread": self.sigma,
            "ratio": self.ratio, "threshold": float(self.threshold), "reason": self.reason,
            "started": float(self.started), "peak": float(self.peak),
            "intervals": self.intervals, "top": self.top, **self.extra,
        }
        if state == CLOSE:
            body.update(ended=float(self.ended), duration_s=float(self.ended - self.started),
                        close_reason=self.close_reason)
        return body

    def __repr__(self):
        return (f"Alert({self.service!r}, {self.signal}, rate={self.rate:g}, "
                f"baseline={self.baseline}, started={self.started})")


@dataclass(frozen=True)
class AlertEvent:
    state: str                # OPEN or CLOSE
    alert: Alert
    ts: float

    def fields(self):
        return self.alert.fields(self.state)


class _Signal:
    __slots__ = ("window", "above", "below", "pending_started", "alert", "shadow", "last",
                 "own", "seeded")

    def __init__(self, size, zeros=0, seed=None, seeds=0):
        zeros = min(zeros, size)
        seeded = [seed] * seeds if seed is not None else []
        self.window = RobustWindow(size, seeded + [0.0] * zeros)
        self.own = zeros              # samples of the service's own learnt (seeds are not)
        self.seeded = seed is not None    # the window starts with a profile's figure
        self.above = 0
        self.below = 0
        self.pending_started = None
        self.alert = None
        self.shadow = None
        self.last = 0.0


# per interval, a service's volume (log writes/s) decays by this while it is quieter
VOLUME_DECAY = 0.99


class _Service:
    __slots__ = ("signals", "intervals", "quiet", "new", "volume", "protected")

    def __init__(self, new):
        self.signals = {}
        self.intervals = 0        # intervals tracked
        self.quiet = 0            # consecutive intervals without a rate record
        self.new = new            # appeared after the detector's warm-up
        self.volume = 0.0         # decayed peak of log writes/s: what eviction ranks by
        self.protected = False    # a system unit or container (rate.owner, slots.py)


class Detector:
    """Feed it every interval with observe(); it returns the alerts that opened or closed."""

    def __init__(self, config=None, profile=None):
        """profile: a collector.aggregate.priors.Profile, or None."""
        self.config = config or DetectorConfig()
        self.profile = profile
        self.services = {}
        self.intervals = 0
        self.idle = IdleTimeouts()     # received resets' idle times, the last 10 min

    # -- the interval ----------------------------------------------------------------
    def observe(self, ts, interval_s, rates, resets=()):
        """One interval ending at ts (unix s) of interval_s seconds: its `rate` records
        and (optional) `reset` records. Returns [AlertEvent], closes before opens."""
        cfg = self.config
        by_service = {}
        for rec in rates:
            name = rec.get("service")
            if isinstance(name, str):
                by_service[name] = rec
        resets_by_service = {}
        for r in resets:
            resets_by_service.setdefault(r.get("service"), []).append(r)
        detector_warm = self.intervals >= cfg.warmup
        events = []
        for name in by_service:
            if name not in self.services:
                self.services[name] = _Service(new=detector_warm)
        for name, svc in self.services.items():
            rec = by_service.get(name)
            svc.quiet = 0 if rec is not None else svc.quiet + 1
            rate, over = 0.0, None
            if rec is not None:
                rate = signal_value(rec, LOG_WRITES) or 0.0
                svc.protected = protected(rec.get("owner"))
                over = host_limit(rec, rate)
            svc.volume = max(rate, svc.volume * VOLUME_DECAY)
            for signal in SIGNALS:
                value = signal_value(rec, signal) if rec is not None else 0.0
                st = svc.signals.get(signal)
                if st is None:
                    if not value:          # None or 0: nothing to learn from yet
                        continue
                    st = svc.signals[signal] = self._new_signal(name, signal, svc.intervals)
                ev = self._step(name, svc, signal, st, value or 0.0, ts, interval_s, rec,
                                resets_by_service.get(name, ()),
                                over if signal in (LOG_WRITES, LOG_BYTES) else None)
                if ev is not None:
                    events.append(ev)
            svc.intervals += 1
        self.intervals += 1
        self._expire()
        events.sort(key=lambda e: (e.state != CLOSE, e.alert.service, e.alert.signal))
        self._idle_timeouts(ts, resets_by_service, events)
        return events

    def _idle_timeouts(self, ts, resets_by_service, events):
        """The idle timeout named (docs/detection.md): received resets into the window;
        a resets-received alert (open, or closing now) carries its service's verdicts in
        `top.idle_timeouts`."""
        self.idle.observe(ts, [r for recs in resets_by_service.values() for r in recs])
        alerts = [e.alert for e in events if e.state == CLOSE] + self.open_alerts()
        for a in alerts:
            found = self.idle.verdicts(a.service) if a.signal == RESETS_RECEIVED else ()
            if found:
                a.top = dict(a.top or {}, idle_timeouts=[v.as_dict()
                                                         for v in found[:self.config.top]])

    def _new_signal(self, name, signal, zeros):
        figure = self.profile.figure(name, signal) if self.profile is not None else None
        if figure is None:
            return _Signal(self.config.window, zeros=zeros)
        return _Signal(self.config.window, zeros=zeros, seed=figure, seeds=self.config.warmup)

    @staticmethod
    def _learn(st, v, over):
        """Add an interval to the baseline, unless the service was over a host limit in it."""
        if over is None:
            st.window.add(v)
            st.own += 1

    def _step(self, name, svc, signal, st, v, ts, interval_s, rec, resets, over):
        """over: the host limit (a loss_risk entry) the service alone was over in this
        interval (log signals only), or None."""
        cfg = self.config
        limits = cfg.limits[signal]
        st.last = v
        a = st.alert
        if a is not None:
            a.intervals += 1
            a.rate = v
            if over is None:              # a flood over a host limit is never the new normal
                st.shadow.append(v)
            if v > a.peak:
                a.peak = v
            if v > a.threshold:
                a.top = contributors(signal, rec, resets, cfg.top)
            st.below = st.below + 1 if v < cfg.hysteresis * a.threshold else 0
            if st.below >= cfg.close_after:
                return self._close(st, ts, RECOVERED)
            if a.intervals >= cfg.relearn_after \
                    and len(st.shadow) >= min(cfg.warmup, cfg.relearn_after):
                st.window = RobustWindow(cfg.window, st.shadow)
                st.own, st.seeded = len(st.shadow), False
                return self._close(st, ts, RELEARNED)
            return None
        above, base, threshold, reason, extra = False, None, None, None, None
        if v > limits.floor:            # every threshold is >= the floor: cheap test first
            learning = st.own < cfg.warmup
            if not learning or st.seeded:
                base = st.window.summary(cfg.refresh - 1)
                threshold = base.threshold(cfg.k, cfg.z, cfg.burst_factor, limits.floor)
                reason = ABOVE_PROFILE if learning else ABOVE_BASELINE
                extra = self.profile.fields() if learning else None
                above = v > threshold
            if not above and learning and over is not None and signal == LOG_WRITES:
                base = st.window.summary(cfg.refresh - 1) if len(st.window) else None
                threshold = max(limits.floor, over["allowed_per_s"])
                reason, extra = ABOVE_HOST_LIMIT, host_limit_fields(over)
                above = v > threshold
            elif not above and learning and not st.seeded and svc.new:
                base = st.window.summary(cfg.refresh - 1) if len(st.window) else None
                threshold = max(limits.floor, limits.new_floor)
                reason = NEW_SERVICE
                above = v > threshold
        if not above:
            st.above = 0
            st.pending_started = None
            self._learn(st, v, over)
            return None
        st.above += 1
        if st.above == 1:
            st.pending_started = ts - interval_s
        if st.above < cfg.open_after:
            self._learn(st, v, over)      # a lone spike is part of normal life
            return None
        baseline = base.median if base is not None else None
        sigma = base.sigma if base is not None else None
        st.alert = Alert(name, signal, st.pending_started, v, baseline, sigma, threshold,
                         reason, contributors(signal, rec, resets, cfg.top), extra)
        st.shadow = deque(maxlen=cfg.window)
        st.below = 0
        st.above = 0
        st.pending_started = None
        return AlertEvent(OPEN, st.alert, ts)

    @staticmethod
    def _close(st, ts, why):
        a = st.alert
        a.ended = ts
        a.close_reason = why
        st.alert = None
        st.shadow = None
        st.below = 0
        return AlertEvent(CLOSE, a, ts)

    def _expire(self):
        cfg = self.config

        def has_alert(svc):
            return any(s.alert is not None for s in svc.signals.values())

        gone = [n for n, s in self.services.items()
                if s.quiet >= cfg.expire_after and not has_alert(s)]
        for n in gone:
            del self.services[n]
        excess = len(self.services) - cfg.max_services
        if excess > 0:
            # never by name alone: a flood of cheap names would push out a real
            # service every interval. Unprotected first, then the quietest by volume,
            # then the longest quiet (docs/detection.md, "Slots").
            svcs = self.services
            idle = sorted((n for n, s in svcs.items() if not has_alert(s)),
                          key=lambda n: (svcs[n].protected, svcs[n].volume, -svcs[n].quiet,
                                         n))
            for n in idle[:excess]:
                del self.services[n]

    # -- views ------------------------------------------------------------------------
    def open_alerts(self):
        """The alerts open now, by service and signal."""
        return [st.alert for name in sorted(self.services)
                for sig, st in sorted(self.services[name].signals.items())
                if st.alert is not None]

    def status(self):
        """{(service, signal): (alerting, rate of the last interval)} of every tracked
        signal: what a Prometheus gauge per service and signal shows."""
        return {(name, sig): (st.alert is not None, st.last)
                for name, svc in self.services.items() for sig, st in svc.signals.items()}

    def baseline(self, service, signal):
        """The current Baseline of one service and signal, or None (untracked, empty)."""
        st = self.services.get(service, _Service(False)).signals.get(signal)
        if st is None or not len(st.window):
            return None
        return st.window.summary()
