"""The resets half of a collection interval: drain the reset probe, name owners,
aggregate per service, and produce the stream's reset fields and bounded `reset` records.

collector/pipeline/runtime.py calls interval() once per interval and poll() while it waits.
"""
from collector.records.model import reset_record
from collector.aggregate.resets import EventBudget, aggregate_resets


class ResetStage:
    def __init__(self, probe, attributor, host, max_records=100):
        self.probe, self.attributor, self.host = probe, attributor, host
        self.budget = EventBudget(max_records)
        self.events = []            # (service, ResetEvent) since the last interval
        self.pending = []           # raw events, attributed at the interval's end
        probe.on_event = self.pending.append

    def set_max_records(self, n):
        """At most n `reset` records per interval; the kernel then sends no more events than
        that (the daemon, which has no other use for them)."""
        self.budget = EventBudget(n)
        self.probe.set_event_budget(n)

    def poll(self, timeout_ms):
        self.probe.poll(timeout_ms)

    def poll_fd(self):
        return self.probe.poll_fd()

    def consume(self):
        self.probe.consume()

    def flip(self):
        self.probe.flip()

    def interval(self, seq, ts, flipped=False):
        """(per-service ServiceResets, `reset` records, stats fields, (service, event)
        pairs) for one interval; flipped: the caller flipped the probe's maps and waited
        the grace period."""
        self.attributor.start_interval()
        counts = self.probe.collect() if flipped else self.probe.drain()
        health = self.probe.health()
        per_service = aggregate_resets(self.attributor.attribute(counts))
        records, attributed = [], []
        for ev in self.pending:
            service, pid, _comm = self.attributor.owner(ev.tgid, ev.comm, ev.cgroup_id, ev.kind,
                                                        ev.lport)
            attributed.append((service, ev))
            if self.budget.take():
                records.append(reset_record(self.host, ts, seq, service, pid, ev))
        self.pending.clear()        # (probe.on_event appends to this very list)
        stats = {
            "resets_events_lost": health["events_lost"],
            "resets_lost": health["counts_full"],
            "resets_owner_unknown": health["no_owner"],
            "resets_owner_map_full": health["owners_full"],
            # over the records budget here, or over the kernel's event budget (not sent)
            "reset_records_suppressed": self.budget.next_interval()
            + health["events_over_budget"],
        }
        return per_service, records, stats, attributed

    def close(self):
        self.probe.close()
