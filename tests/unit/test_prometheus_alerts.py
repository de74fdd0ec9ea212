"""surgewatch_alert{service,signal} from `alert` records (collector/sinks/prometheus.py)."""
from prometheus_client.parser import text_string_to_metric_families

from collector.records import model
from collector.sinks.prometheus import PrometheusSink


def alert(service, signal, state):
    extra = dict(ended=2.0, duration_s=1.0, close_reason="recovered") if state == "close" else {}
    return model.alert_record("h", 1.0, seq=1, state=state, service=service, signal=signal,
                              rate=5000, baseline=10, spread=1, ratio=500, threshold=100,
                              reason="above_baseline", started=1.0, peak=5000, intervals=0,
                              top={}, **extra)


def gauge(sink):
    out = {}
    for fam in text_string_to_metric_families(sink.render().decode()):
        if fam.name == "surgewatch_alert":
            for s in fam.samples:
                out[(s.labels["service"], s.labels["signal"])] = s.value
    return out


def stats():
    return model.stats_record("h", 1.0, seq=0, interval=1.0, drain_ms=1, keys=1,
                              map_capacity=10, lost_events=0, unresolved_writes=0,
                              cpu_s=0, rss_bytes=1)


def test_alert_gauge_opens_closes_and_leaves_with_the_service():
    now = [0.0]
    sink = PrometheusSink(serve=False, label_idle_s=60, clock=lambda: now[0])
    rate = model.rate_record("h", 1.0, seq=0, interval=1.0, service="app", pids=[1],
                             comms=["a"], log_writes=1, log_bytes=1, paths=[])
    sink.write_interval([rate, alert("app", "log_writes_per_s", "open"), stats()])
    assert gauge(sink) == {("app", "log_writes_per_s"): 1.0}
    sink.write_interval([alert("app", "log_writes_per_s", "close"), stats()])
    assert gauge(sink) == {("app", "log_writes_per_s"): 0.0}
    now[0] = 120.0                       # the service's label expires: so does the series
    sink.write_interval([stats()])
    assert gauge(sink) == {}


def test_alert_series_are_bounded():
    sink = PrometheusSink(serve=False, max_services=1)
    sink.write_interval([alert(f"s{i}", "log_writes_per_s", "open") for i in range(10)])
    assert len(gauge(sink)) == 4
