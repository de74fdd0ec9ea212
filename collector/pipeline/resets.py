"""The resets half of a collection interval: drain the reset probe, name owners
(ResetAttributor: host lookups for who owns each reset),
aggregate per service, and produce the stream's reset fields and bounded `reset` records;
the same drain's per-process TCP load, per service (`load`, for the records' load fields).

collector/pipeline/runtime.py drives it as one of its stages (the probe's interface:
name, meta(), flip(), poll_fd(), consume(), take_links(), close()) and calls interval()
once per interval.
"""
from collector.errors import HostResourceError
from collector.host.services import UNKNOWN_OWNER
from collector.records.model import reset_record
from collector.aggregate.load import AttributedLoad, aggregate_load
from collector.aggregate.resets import AttributedResets, EventBudget, aggregate_resets


class ResetStage:
    def __init__(self, probe, attributor, host, max_records=100):
        self.probe, self.attributor, self.host = probe, attributor, host
        self.budget = EventBudget(max_records)
        self.events = []            # (service, ResetEvent) since the last interval
        self.pending = []           # raw events, attributed at the interval's end
        self.load = {}              # service -> ServiceLoad of the last interval()
        self.owners = attributor.owners     # (the same dict: ResetAttributor.owners)
        probe.on_event = self.pending.append

    def set_max_records(self, n):
        """At most n `reset` records per interval; the kernel then sends no more events than
        that (the daemon, which has no other use for them)."""
        self.budget = EventBudget(n)
        self.probe.set_event_budget(n)

    @property
    def name(self):
        return self.probe.name

    def meta(self):
        return self.probe.meta()

    def poll(self, timeout_ms):
        self.probe.poll(timeout_ms)

    def poll_fd(self):
        return self.probe.poll_fd()

    def consume(self):
        self.probe.consume()

    def flip(self):
        self.probe.flip()

    def take_links(self):
        return self.probe.take_links()

    def interval(self, seq, ts, flipped=False):
        """(per-service ServiceResets, `reset` records, stats fields, (service, event)
        pairs) for one interval; flipped: the caller flipped the probe's maps and waited
        the grace period."""
        self.attributor.start_interval()
        drained = self.probe.collect() if flipped else self.probe.drain()
        health = self.probe.health()
        per_service = aggregate_resets(self.attributor.attribute(drained.counts))
        self.load = aggregate_load(self.attributor.attribute_load(drained.loads))
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
            "load_lost": health.get("loads_full", 0),
            # over the records budget here, or over the kernel's event budget (not sent)
            "reset_records_suppressed": self.budget.next_interval()
            + health["events_over_budget"],
        }
        return per_service, records, stats, attributed

    def close(self):
        self.probe.close()


class ResetAttributor:
    """Names the service of kernel reset counts and events.

    An owner recorded by the probe (tgid, comm, cgroup id) goes through the service
    resolver; a reset the kernel sent with no socket goes to the local listener of its
    port when there is one (else "kernel (no socket)"); a socket whose owner the probe
    never saw (opened before it was loaded) is labelled as such.

    owners: {service: owner} of the services named this interval (the resolver's owner():
    "system", "container", "uid:N", "unknown"), for the slot ranking
    (collector/aggregate/slots.py): a unit that serves TCP but never logs is still known
    as a system unit. A known owner is never replaced by "unknown" within an interval.
    """

    NO_SOCKET = "kernel (no socket)"
    UNKNOWN = "unknown (socket predates probe)"
    UNRESOLVED = "unresolved (collector out of resources)"

    def __init__(self, services, listeners):
        self.services, self.listeners = services, listeners
        self.resource_errors = 0
        self.owners = {}
        self._owner_of = getattr(services, "owner", None)

    def start_interval(self):
        self.listeners.refresh()
        self.owners.clear()         # (the same dict object: ResetStage.owners)

    def _note(self, service, pid, cgroup_id):
        """The owner of service from the process just resolved (pid, cgroup_id)."""
        if self._owner_of is None:
            return
        if self.owners.get(service, UNKNOWN_OWNER) == UNKNOWN_OWNER:
            self.owners[service] = self._owner_of(pid, cgroup_id)

    def owner(self, tgid, comm, cgroup_id, kind, lport):
        """(service, pid, comm) for one owner as the probe reported it; the daemon out of
        fds or memory while looking: UNRESOLVED this interval (counted), never a crash."""
        try:
            return self._owner(tgid, comm, cgroup_id, kind, lport)
        except HostResourceError:
            self.resource_errors += 1
            return self.UNRESOLVED, tgid, comm

    def take_resource_errors(self):
        n, self.resource_errors = self.resource_errors, 0
        return n

    def _owner(self, tgid, comm, cgroup_id, kind, lport):
        if tgid:
            service = self.services.resolve(tgid, comm, cgroup_id or None)
            self._note(service, tgid, cgroup_id or None)
            return service, tgid, comm
        if kind == "no_socket":
            listener = self.listeners.owner(lport) if lport else None
            if listener is not None:
                service = self.services.resolve(listener.pid, listener.comm)
                self._note(service, listener.pid, None)
                return service, listener.pid, listener.comm
            return self.NO_SOCKET, 0, ""
        return self.UNKNOWN, 0, ""

    def attribute(self, counts):
        out = []
        for c in counts:
            service, pid, comm = self.owner(c.tgid, c.comm, c.cgroup_id, c.kind, c.lport)
            out.append(AttributedResets(service, pid, comm, c.direction, c.kind, c.state,
                                        c.reason, c.count, c.idle_unknown, c.idle_hist))
        return out

    def attribute_load(self, loads):
        """AttributedLoad of the probe's per-process LoadCounts (always a known process)."""
        out = []
        for lc in loads:
            try:
                service = self.services.resolve(lc.tgid, lc.comm, lc.cgroup_id or None)
                self._note(service, lc.tgid, lc.cgroup_id or None)
            except HostResourceError:
                self.resource_errors += 1
                service = self.UNRESOLVED
            out.append(AttributedLoad(service, lc.tgid, lc.comm, lc.accepted, lc.connected,
                                      lc.tcp_bytes))
        return out
