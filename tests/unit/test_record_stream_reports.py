"""One record stream: what an output lost reaches the next `stats` record through
Collector.report_from, and a service's reset kinds and idle histogram travel in its `rate`
record (schema 1.10), folded exactly into `(other)` and read from there by Prometheus."""
from collections import Counter

from collector.aggregate.resets import ServiceResets, add_resets
from collector.aggregate.slots import OTHER, fold_rates
from collector.pipeline.runtime import Collector
from collector.records import model
from collector.sinks.prometheus import PrometheusSink
from collector.sinks.registry import OutputContext, Outputs


def resets(name, kinds, hist):
    r = ServiceResets(name, sent=sum(kinds.values()), received=1, kinds=Counter(kinds),
                      idle_hist=list(hist))
    r.pids.add(7)
    return r


def record(name, writes=0):
    return model.rate_record("h", 1.0, seq=0, interval=1.0, service=name, pids=[7],
                             comms=["x"], log_writes=writes, log_bytes=writes, paths=[])


def test_add_resets_puts_kinds_and_idle_hist_on_the_services_record():
    rates = [record("app", 5), record("quiet", 1)]
    add_resets(rates, {"app": resets("app", {"abort": 2, "reply": 1}, [1, 0, 3]),
                       "lone": resets("lone", {}, [0, 1])},
               lambda name, r: record(name))
    by = {r["service"]: r for r in rates}
    assert by["app"][model.RESETS_SENT_BY_KIND] == {"abort": 2, "reply": 1}
    assert by["app"][model.RESETS_IDLE_HIST] == [1, 0, 3]
    assert model.RESETS_SENT_BY_KIND not in by["lone"] and \
        by["lone"][model.RESETS_IDLE_HIST] == [0, 1]
    assert model.RESETS_SENT_BY_KIND not in by["quiet"] and \
        model.RESETS_IDLE_HIST not in by["quiet"]


def test_fold_sums_kinds_key_by_key_and_hist_bucket_by_bucket():
    rates = [record(f"s{i}", 100 - 10 * i) for i in range(4)]     # s2, s3 folded
    add_resets(rates, {"s2": resets("s2", {"abort": 2}, [1, 2]),
                       "s3": resets("s3", {"abort": 1, "reply": 4}, [0, 1, 5])},
               lambda name, r: record(name))
    _kept, (_body, extra) = fold_rates(rates, {}, limit=2)
    assert extra[model.RESETS_SENT_BY_KIND] == {"abort": 3, "reply": 4}
    assert extra[model.RESETS_IDLE_HIST] == [1, 3, 5]
    assert extra["resets_sent"] == 7


def test_prometheus_counts_kinds_under_the_records_label():
    rec = record(OTHER, 3)
    rec.update({"resets_sent": 3, "resets_received": 0, "folded": 2,
                model.RESETS_SENT_BY_KIND: {"abort": 3}, model.RESETS_IDLE_HIST: [0, 3]})
    sink = PrometheusSink(serve=False)
    sink.write_interval([rec])
    text = sink.render().decode()
    assert 'surgewatch_tcp_resets_sent_by_kind_total{kind="abort",service="(other)"} 3.0' \
        in text
    assert 'surgewatch_tcp_reset_idle_seconds_count{service="(other)"} 3.0' in text


class Dropping:
    """An output that lost records, as collector/sinks/segments.py reports it."""

    name = "segments"

    def __init__(self):
        self.dropped = 0

    def take_stats(self):
        n, self.dropped = self.dropped, 0
        return {"segment_dropped_records": n}

    def close(self):
        pass


def test_outputs_report_their_losses_in_the_next_stats_record():
    outputs = Outputs(OutputContext(lambda *a, **k: None, None))
    assert outputs.take_stats() == {}
    sink = outputs.sinks["segments"] = Dropping()
    sink.dropped = 4
    assert outputs.take_stats() == {"segment_dropped_records": 4}
    assert outputs.take_stats() == {"segment_dropped_records": 0}


def test_collector_adds_what_its_sources_report():
    c = Collector.__new__(Collector)
    c._reporters = []
    sink = Dropping()
    c.report_from(sink)
    sink.dropped = 2
    assert c._reported() == {"segment_dropped_records": 2}
