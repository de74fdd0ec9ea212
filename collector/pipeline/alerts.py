"""The alerts half of a collection interval, for `surgewatch run`.

Feeds each interval's `rate` and `reset` records to collector.aggregate.alerts.Detector
and turns what opened or closed into `alert` records (docs/stream.md) and one log line
each (docs/detection.md). The interval's end time and length come from its `stats` record.
"""
from collector.records import model
from collector.aggregate.alerts import Detector, format_event


class AlertStage:
    def __init__(self, host, log=None, config=None):
        self.host = host
        self.log = log
        self.detector = Detector(config)

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
        events = self.detector.observe(ts, float(stats["interval"]), rates, resets)
        out = []
        for ev in events:
            out.append(model.alert_record(self.host, ts, seq=stats["seq"], **ev.fields()))
            if self.log is not None:
                level = "warning" if ev.state == "open" else "notice"
                self.log(level, format_event(ev),
                         key=f"alert:{ev.alert.service}:{ev.alert.signal}:{ev.state}")
        return out

    def status(self):
        """{(service, signal): (alerting, rate)}: for a gauge per service and signal."""
        return self.detector.status()
