"""The alerts half of a collection interval, for `surgewatch run` and `snapshot`.

Feeds each interval's `rate` and `reset` records to collector.aggregate.alerts.Detector
and turns what opened or closed into `alert` records (docs/stream.md) and one log line
each (docs/detection.md). The interval's end time and length come from its `stats` record.
The loss-risk check (collector.aggregate.lossrisk) runs here too: it adds `loss_risk` to
the interval's rate records at risk and raises `log_loss_risk` alerts; and, given a
reader of journald's drop notices, the messages actually lost (collector.aggregate.loglost):
`log_lost` in the rate records and `log_lost` alerts. The loss-risk check runs first: the
detector reads its entries (a service over a host limit, collector/aggregate/priors.py).
`run` takes all of it per interval (interval()); `snapshot` its steps one by one, as it
judges only the services shown and says its problems after the window.
"""
from collector.records import model
from collector.aggregate.alert_lines import format_event
from collector.aggregate.alerts import Detector
from collector.aggregate.loglost import LogLost, format_lost_event
from collector.aggregate.lossrisk import LossRisk, format_risk_event
from collector.host.journald_drops import JournaldDrops, Unavailable
from collector.host.journald_limits import JournaldLimits


def open_journald_drops(root="/", log=None):
    """A reader of journald's drop notices (collector/host/journald_drops.py), or None
    with one notice line saying why."""
    try:
        return JournaldDrops(root)
    except Unavailable as e:
        if log is not None:
            log("notice", f"messages journald drops are not counted: {e}", key="journald-drops")
        return None


class LogProblems:
    """Where the stage's own problems go in the daemon: one log line each."""

    def __init__(self, log):
        self.log = log

    def warn(self, message):
        """journald's limits: a file not read, a value not parsed."""
        if self.log is not None:
            self.log("warning", message, key=f"journald-limits:{message[:80]}")

    def failed(self, what, key, error):
        """A check that failed this interval (it costs only its own events)."""
        if self.log is not None:
            self.log("error", f"{what} failed this interval: {type(error).__name__}: {error}",
                     key=key)


class AlertStage:
    def __init__(self, host, log=None, config=None, capacity=(), loss_risk=None,
                 host_root="/", drops=None, profile=None, detector=None, problems=None):
        """log: where each event's line goes (None: nowhere); capacity: the config's
        [capacity] globs; loss_risk: a LossRisk (tests), else one reading journald's
        limits from this host's files (under host_root: the collector's HostRoot.files,
        collector/host/hostroot.py); drops: None, or a reader whose take() returns
        {unit: messages journald dropped} since the last call; profile: a
        collector.aggregate.priors.Profile ([alerts] profile), or None; detector: the
        Detector to use (snapshot's starts warm), else one of config and profile;
        problems: warn(message) and failed(what, key, error), else LogProblems(log)."""
        self.host = host
        self.log = log
        self.problems = problems if problems is not None else LogProblems(log)
        self.detector = detector if detector is not None else Detector(config, profile)
        if loss_risk is None:
            loss_risk = LossRisk(JournaldLimits(root=host_root, warn=self.problems.warn),
                                 capacity)
        self.loss_risk = loss_risk
        self.drops = drops
        self.lost = LogLost()

    def set_capacity(self, capacity):
        """The [capacity] of a reloaded config."""
        self.loss_risk.set_capacity(capacity)

    def interval(self, rates, stats, resets=()):
        """`alert` records for one interval (closes first, then opens). A failure here is
        logged and costs this interval's alerts, never the interval's other records."""
        try:
            return self._interval(rates, stats, resets)
        except Exception as e:          # a bug in detection must not stop collection
            if self.log is not None:
                self.log("error", f"alert detection failed this interval: "
                                  f"{type(e).__name__}: {e}", key="alert-failed")
            return []

    def _interval(self, rates, stats, resets):
        # first: the detector reads the loss_risk entries this adds to the rate records
        risks = self.check_risk(rates, stats)
        events = self.judge(rates, stats, resets)
        return self.records(stats, events, risks, self.count_lost(rates, stats))

    def check_risk(self, rates, stats):
        """The interval's log_loss_risk events; the rate records at risk get `loss_risk`."""
        return self._guarded("loss-risk check", "loss-risk-failed",
                             lambda: self.loss_risk.observe(float(stats["ts"]),
                                                            float(stats["interval"]), rates))

    def judge(self, rates, stats, resets=()):
        """The detector's events of the interval (rate and reset records)."""
        return self.detector.observe(float(stats["ts"]), float(stats["interval"]), rates,
                                     resets)

    def count_lost(self, rates, stats):
        """The interval's log_lost events (rates get `log_lost`); [] without a reader."""
        if self.drops is None:
            return []
        return self._guarded(
            "journald drop count", "lost-failed",
            lambda: self.lost.observe(self.host, float(stats["ts"]), stats["seq"],
                                      float(stats["interval"]), rates, self.drops.take()))

    def records(self, stats, events, risks, lost):
        """`alert` records (and log lines) of the detector's, loss-risk and lost events."""
        ts = float(stats["ts"])
        return (self._records(ts, stats, events, format_event,
                              lambda e: f"alert:{e.alert.service}:{e.alert.signal}")
                + self._records(ts, stats, risks, format_risk_event,
                                lambda e: f"loss:{e.risk.service}:{e.risk.key}")
                + self._records(ts, stats, lost, format_lost_event,
                                lambda e: f"lost:{e.loss.service}"))

    def _guarded(self, what, key, observe):
        """observe()'s events; a failure is reported and costs only them."""
        try:
            return observe()
        except Exception as e:          # a bug here must not cost the other alerts
            self.problems.failed(what, key, e)
            return []

    def _records(self, ts, stats, events, line, key):
        """An `alert` record and a log line (warning on open, notice on close) per event."""
        out = []
        for ev in events:
            out.append(model.alert_record(self.host, ts, seq=stats["seq"], **ev.fields()))
            if self.log is not None:
                self.log("warning" if ev.state == "open" else "notice", line(ev),
                         key=f"{key(ev)}:{ev.state}")
        return out

    def close(self):
        if self.drops is not None:
            self.drops.close()

    def status(self):
        """{(service, signal): (alerting, rate)}: for a gauge per service and signal."""
        return self.detector.status()
