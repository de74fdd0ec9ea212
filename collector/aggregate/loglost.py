"""Messages actually lost: what journald reported dropping, beside each service's rate.

Pure: the interval's `rate` records and {unit: dropped} (collector/host/journald_drops.py)
in; each dropped count lands in its service's record as `log_lost` (a record is added
for a unit that wrote nothing this interval), and `log_lost` alert events come out: one
opens at the first interval with drops and closes after `close_after` intervals without.
Where the loss-risk alert said a service is at risk, this one says "lost: N"
(docs/detection.md, "Messages lost").
"""
from collector.records import model

LOG_LOST = "log_lost"            # the alert signal and the rate record's field
OPEN, CLOSE = "open", "close"
CLOSE_AFTER = 3


class _Loss:
    """One open log_lost alert."""

    def __init__(self, service, started):
        self.service, self.started = service, started
        self.lost = 0                   # messages dropped since it opened
        self.rate = self.peak = 0.0     # dropped per second: the last interval, the most
        self.intervals = 0
        self.quiet = 0
        self.ended = None

    def fields(self, state):
        """The body of an `alert` record (collector.records.model.alert_record)."""
        body = {
            "state": state, "service": self.service, "signal": LOG_LOST,
            "rate": float(self.rate), "baseline": None, "spread": None, "ratio": None,
            "threshold": 0.0, "reason": "journald_suppressed", "started": float(self.started),
            "peak": float(self.peak), "intervals": self.intervals, "top": {},
            "lost": int(self.lost),
        }
        if state == CLOSE:
            body.update(ended=float(self.ended), duration_s=float(self.ended - self.started),
                        close_reason="no_drops")
        return body


class LostEvent:
    __slots__ = ("loss", "state", "ts", "lost")

    def __init__(self, state, loss, ts, lost):
        self.state, self.loss, self.ts, self.lost = state, loss, ts, lost

    def fields(self):
        return self.loss.fields(self.state)


class LogLost:
    def __init__(self, close_after=CLOSE_AFTER):
        self.close_after = close_after
        self.open = {}                  # service -> _Loss
        self.totals = {}                # service -> messages dropped since the start

    def observe(self, host, ts, seq, interval_s, rates, dropped):
        """Adds `log_lost` to the rate records of the services journald dropped messages
        of (appending a record for one without); returns the alerts that opened or closed."""
        by_service = {r.get("service"): r for r in rates if r.get("type") == model.RECORD_RATE}
        for unit, n in sorted(dropped.items()):
            rec = by_service.get(unit)
            if rec is None:
                rec = by_service[unit] = model.rate_record(
                    host, ts, seq=seq, interval=interval_s, service=unit, pids=(), comms=(),
                    log_writes=0, log_bytes=0, paths=[])
                rates.append(rec)
            rec[LOG_LOST] = int(rec.get(LOG_LOST, 0)) + int(n)
            self.totals[unit] = self.totals.get(unit, 0) + int(n)
        return self._events(ts, interval_s, dropped)

    def _events(self, ts, interval_s, dropped):
        events = []
        for service, loss in list(self.open.items()):
            n = dropped.get(service, 0)
            loss.intervals += 1
            loss.rate = n / interval_s
            if n:
                loss.lost += n
                loss.peak = max(loss.peak, loss.rate)
                loss.quiet = 0
                continue
            loss.quiet += 1
            if loss.quiet >= self.close_after:
                loss.ended = ts
                del self.open[service]
                events.append(LostEvent(CLOSE, loss, ts, 0))
        for service, n in sorted(dropped.items()):
            if n and service not in self.open:
                loss = self.open[service] = _Loss(service, ts - interval_s)
                loss.lost, loss.intervals = n, 1
                loss.rate = loss.peak = n / interval_s
                events.append(LostEvent(OPEN, loss, ts, n))
        return events


def format_lost_event(ev):
    """One line for the daemon's log."""
    loss = ev.loss
    if ev.state == OPEN:
        return (f"lost: {loss.service}: journald dropped {loss.lost} messages "
                "(its rate limit; journald's \"Suppressed\" notice)")
    return (f"lost over: {loss.service}: no more drops; {loss.lost} messages lost in "
            f"{loss.ended - loss.started:.0f}s")
