"""The alerts half of a collection interval, for `surgewatch run`.

Feeds each interval's `rate` and `reset` records to collector.aggregate.alerts.Detector
and turns what opened or closed into `alert` records (docs/stream.md) and one log line
each (docs/detection.md). The interval's end time and length come from its `stats` record.
The loss-risk check (collector.aggregate.lossrisk) runs here too: it adds `loss_risk` to
the interval's rate records at risk and raises `log_loss_risk` alerts; and, given a
reader of journald's drop notices, the messages actually lost (collector.aggregate.loglost):
`log_lost` in the rate records and `log_lost` alerts. The loss-risk check runs first: the
detector reads its entries (a service over a host limit, collector/aggregate/priors.py).
"""
from collector.records import model
from collector.aggregate.alerts import Detector, format_event
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


class AlertStage:
    def __init__(self, host, log=None, config=None, capacity=(), loss_risk=None,
                 host_root="/", drops=None, profile=None):
        """capacity: the config's [capacity] globs; loss_risk: a LossRisk (tests), else
        one reading journald's limits from this host's files (under host_root: the
        collector's HostRoot.files, collector/host/hostroot.py); drops: None, or a reader
        whose take() returns {unit: messages journald dropped} since the last call;
        profile: a collector.aggregate.priors.Profile ([alerts] profile), or None."""
        self.host = host
        self.log = log
        self.detector = Detector(config, profile)
        if loss_risk is None:
            loss_risk = LossRisk(JournaldLimits(root=host_root, warn=self._warn), capacity)
        self.loss_risk = loss_risk
        self.drops = drops
        self.lost = LogLost()

    def _warn(self, message):
        if self.log is not None:
            self.log("warning", message, key=f"journald-limits:{message[:80]}")

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
        ts = float(stats["ts"])
        risks = self._loss_risk(ts, stats, rates)     # first: the detector reads loss_risk
        events = self.detector.observe(ts, float(stats["interval"]), rates, resets)
        out = []
        for ev in events:
            out.append(model.alert_record(self.host, ts, seq=stats["seq"], **ev.fields()))
            if self.log is not None:
                level = "warning" if ev.state == "open" else "notice"
                self.log(level, format_event(ev),
                         key=f"alert:{ev.alert.service}:{ev.alert.signal}:{ev.state}")
        return out + risks + self._lost(ts, stats, rates)

    def _lost(self, ts, stats, rates):
        """log_lost `alert` records of the interval (rates get `log_lost`); a failure costs
        only them."""
        if self.drops is None:
            return []
        try:
            events = self.lost.observe(self.host, ts, stats["seq"], float(stats["interval"]),
                                       rates, self.drops.take())
        except Exception as e:          # a bug here must not cost the other alerts
            if self.log is not None:
                self.log("error", f"journald drop count failed this interval: "
                                  f"{type(e).__name__}: {e}", key="lost-failed")
            return []
        out = []
        for ev in events:
            out.append(model.alert_record(self.host, ts, seq=stats["seq"], **ev.fields()))
            if self.log is not None:
                self.log("warning" if ev.state == "open" else "notice", format_lost_event(ev),
                         key=f"lost:{ev.loss.service}:{ev.state}")
        return out

    def _loss_risk(self, ts, stats, rates):
        """log_loss_risk `alert` records of the interval; a failure costs only them."""
        try:
            events = self.loss_risk.observe(ts, float(stats["interval"]), rates)
        except Exception as e:          # a bug here must not cost the other alerts
            if self.log is not None:
                self.log("error", f"loss-risk check failed this interval: "
                                  f"{type(e).__name__}: {e}", key="loss-risk-failed")
            return []
        out = []
        for ev in events:
            out.append(model.alert_record(self.host, ts, seq=stats["seq"], **ev.fields()))
            if self.log is not None:
                level = "warning" if ev.state == "open" else "notice"
                self.log(level, format_risk_event(ev),
                         key=f"loss:{ev.risk.service}:{ev.risk.key}:{ev.state}")
        return out

    def close(self):
        if self.drops is not None:
            self.drops.close()

    def status(self):
        """{(service, signal): (alerting, rate)}: for a gauge per service and signal."""
        return self.detector.status()
