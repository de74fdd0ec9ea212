"""The resets half of a collection interval: drain the reset probe, name owners,
aggregate per service, and produce the stream's reset fields and bounded `reset` records.

collector/runtime.py calls interval() once per interval and poll() while it waits.
"""
from collector import model
from collector.aggregate.resets import EventBudget, aggregate_resets


class ResetStage:
    def __init__(self, probe, attributor, host, max_records=100):
        self.probe, self.attributor, self.host = probe, attributor, host
        self.budget = EventBudget(max_records)
        self.events = []            # (service, ResetEvent) since the last interval
        self.pending = []           # raw events, attributed at the interval's end
        self.last = {}              # service -> ServiceResets of the last interval
        self.last_events = []
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
        """(per-service ServiceResets, `reset` records, stats fields) for one interval;
        flipped: the caller flipped the probe's maps and waited the grace period."""
        self.attributor.start_interval()
        counts = self.probe.collect() if flipped else self.probe.drain()
        health = self.probe.health()
        self.last = aggregate_resets(self.attributor.attribute(counts))
        records, attributed = [], []
        for ev in self.pending:
            service, pid, _comm = self.attributor.owner(ev.tgid, ev.comm, ev.cgroup_id, ev.kind,
                                                        ev.lport)
            attributed.append((service, ev))
            if self.budget.take():
                records.append(reset_record(self.host, ts, seq, service, pid, ev))
        self.pending.clear()
        self.last_events = attributed
        stats = {
            "resets_events_lost": health["events_lost"],
            "resets_lost": health["counts_full"],
            "resets_owner_unknown": health["no_owner"],
            "resets_owner_map_full": health["owners_full"],
            # over the records budget here, or over the kernel's event budget (not sent)
            "reset_records_suppressed": self.budget.next_interval()
            + health["events_over_budget"],
        }
        return self.last, records, stats

    def close(self):
        self.probe.close()


def reset_record(host, ts, seq, service, pid, ev):
    rec = {"v": model.SCHEMA_VERSION, "type": model.RECORD_RESET, "ts": float(ts), "host": host,
           "seq": int(seq), "service": service, "pid": int(pid), "comm": ev.comm,
           "direction": ev.direction, "kind": ev.kind, "state": ev.state, "reason": ev.reason,
           "family": "ipv6" if ev.family == 10 else "ipv4",
           "local": ev.laddr, "local_port": ev.lport, "remote": ev.raddr, "remote_port": ev.rport,
           "idle_ms": ev.idle_ms, "owner_source": ev.owner_source}
    return rec
