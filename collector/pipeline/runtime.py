"""The collection loop: kernel counts -> host enrichment -> aggregation -> sinks.

One Collector per run. Each interval it swaps and drains the probe's maps, judges the
drained (process, fd, inode) keys as log destinations or not, names services and turns
the result into stream records for whichever sinks the caller wired up.
"""
import gc
import os
import platform
import resource
import socket
import time
from collections import ChainMap
from typing import NamedTuple

from collector.records import model
from collector.aggregate.logrates import rate_bodies
from collector.aggregate.slots import DEFAULT_MAX_SERVICES, DEFAULT_PER_OWNER, fold_rates
from collector.aggregate.load import add_load, add_ratios
from collector.aggregate.resets import add_resets
from collector.config import RATE_MAX_PATHS
from collector.host.keycache import KeyCache
from collector.host.services import UNKNOWN_OWNER
from collector.records.model import LogWrite
from collector.pipeline.loop import run_loop
from collector.probes.detach import close_fds_parallel
from collector.probes.maps import GRACE_S


def _cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Statm:
    """This process's RSS from /proc/self/statm, read through one fd kept open (one pread
    per interval instead of open/fstat/read/close)."""

    def __init__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.fd = None

    def __call__(self):
        if self.fd is None:
            self.fd = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        return int(os.pread(self.fd, 128, 0).split()[1]) * self.page


_rss_bytes = _Statm()


class Interval(NamedTuple):
    """Everything one interval produced."""
    rates: list            # `rate` records, one per service
    stats: dict            # the `stats` record
    reset_records: list    # bounded `reset` records (docs/stream.md)
    resets: dict           # service -> ServiceResets (collector.aggregate.resets)
    reset_events: list     # (service, ResetEvent) the kernel sent this interval


class Collector:
    def __init__(self, probe, resolver, services, host=None, clock=time.monotonic,
                 wallclock=time.time, resets=None, disabled_probes=None):
        self.probe, self.resolver, self.services = probe, resolver, services
        self.resets = resets          # collector.pipeline.resets.ResetStage, optional
        # what every interval drives alike: the log-write probe, then the stages over
        # other probes; one interface (name, meta(), flip(), poll_fd(), consume(),
        # take_links(), close()): collector/probes/base.py's Probe, which ResetStage wraps
        self.stages = [probe] + ([resets] if resets is not None else [])
        self.disabled_probes = dict(disabled_probes or {})   # name -> why, for `meta`
        self.host = host or socket.gethostname()
        self.clock, self.wallclock = clock, wallclock
        self.seq = 0
        # paths per rate record before the rest is folded into "(other)"; 0: every path
        self.max_paths = RATE_MAX_PATHS
        # rate records per interval, ranked by owner and volume (collector/aggregate/
        # slots.py); the rest summed exactly into one "(other)" record; 0: every service
        self.max_services = DEFAULT_MAX_SERVICES
        self.max_per_owner = DEFAULT_PER_OWNER
        # live keys per interval are bounded by the kernel map; twice that allows churn
        self.keys = KeyCache(resolver, services,
                             max_keys=2 * probe.max_keys)
        self._last_counts = ()
        self.last_writes = []
        self._last_boundary = None
        self.begun = False
        self._cpu_seen = _cpu_seconds()
        self._reporters = []          # report_from(): stats fields from outside the stages

    def meta(self, interval_s, mode, argv=()):
        probes = {s.name: s.meta() for s in self.stages}
        for name, reason in self.disabled_probes.items():
            probes.setdefault(name, {"enabled": False, "reason": reason})
        return model.meta_record(self.host, self.wallclock(), interval_s, probes,
                                 platform.release(), mode=mode, argv=argv)

    @property
    def last_writes(self):
        """The last interval's log writes per drained key ([LogWrite]), built on demand:
        the interval itself only keeps per-(service, path) totals."""
        if self._last_writes is None:
            self._last_writes = [LogWrite(*w) for w in self.keys.writes(self._last_counts)]
            self._last_counts = ()
        return self._last_writes

    @last_writes.setter
    def last_writes(self, writes):
        self._last_writes = list(writes)
        self._last_counts = ()

    def begin(self):
        """Start the first interval now. What the probes counted while they were loading
        (a second or more of bcc compiling) is drained and dropped, so the first interval
        is as long as it claims to be."""
        self._last_boundary = self.clock()
        self.interval()
        self.seq = 0
        self.last_writes = []
        self.started_wall = self._boundary_wall
        self.begun = True

    def interval(self):
        """Close the current interval: returns its Interval."""
        # An interval builds tens of thousands of short-lived, acyclic objects on a busy
        # host: reference counting frees them, the cycle collector would only rescan them.
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            return self._interval()
        finally:
            if gc_was_on:
                gc.enable()

    def _interval(self):
        boundary, self._boundary_wall = self.clock(), self.wallclock()
        interval_s = max(boundary - self._last_boundary, 1e-6)
        self._last_boundary = boundary
        t0 = time.perf_counter()
        drained, resets_flipped = self._drain()
        counts = drained.counts
        accs, unresolved = self._enrich(counts)
        self._last_counts, self._last_writes = counts, None
        drain_ms = (time.perf_counter() - t0) * 1000.0
        health = self.probe.health()
        ts = self.wallclock()
        rates = [model.rate_record(self.host, ts, **body)
                 for body in rate_bodies(accs, self.seq, interval_s, self.max_paths)]
        cpu, rss = _cpu_seconds(), _rss_bytes()
        if self.resets is not None:
            rates, reset_part, reset_stats = self._add_resets(rates, ts, interval_s,
                                                              resets_flipped)
        else:
            rates, reset_part, reset_stats = self._fold(rates, ts), ([], {}, []), {}
        stats = model.stats_record(
            self.host, ts, seq=self.seq, interval=interval_s, drain_ms=drain_ms,
            keys=len(counts), map_capacity=self.probe.max_keys,
            lost_events=health["events_lost"], unresolved_writes=unresolved,
            cpu_s=cpu - self._cpu_seen, rss_bytes=rss,
            **self._write_losses(health, drained.lost_by_uid),
            **reset_stats, host_resource_errors=self._host_resource_errors(),
            probe_runs_missed=self._runs_missed(), **self._reported())
        self.services.end_drain()
        self._cpu_seen = cpu
        self.seq += 1
        return Interval(rates, stats, *reset_part)

    def _write_losses(self, health, by_uid):
        """The log-write probe's part of `stats`: what it could not count (by_uid: its
        drain's writes lost by uid, None when the probe has no such maps)."""
        out = {"lost_writes": health["counts_full"]}
        if by_uid is not None:
            # the drained interval's loss by writer uid (the same epoch as its counts):
            # the host-wide total is their sum, exactly (docs/probe-logwrites.md, "Maps")
            out["lost_writes"] = sum(by_uid.values())
            if by_uid:
                out["lost_writes_by_uid"] = by_uid
        out["iov_truncated"] = health["iov_truncated"]
        out["fd_walk_failed"] = health["fdwalk_failed"]
        return out

    def _runs_missed(self):
        """Runs of either probe's programs the kernel skipped this interval."""
        return self.probe.runs_missed() + (
            self.resets.probe.runs_missed() if self.resets is not None else 0)

    def _host_resource_errors(self):
        """Lookups the daemon could not make for want of fds or memory (their writes are in
        unresolved_writes, their resets under an "unresolved" owner): docs/reliability.md"""
        return self.keys.take_resource_errors() + (
            self.resets.attributor.take_resource_errors() if self.resets is not None else 0)

    def report_from(self, source):
        """source.take_stats() -> {stats field: count} is asked at each interval's end and
        goes into that interval's `stats` record: how an output (or any stage the
        collector does not drive) reports what it lost since, through the record stream."""
        self._reporters.append(source)

    def _reported(self):
        out = {}
        for source in self._reporters:
            for key, n in source.take_stats().items():
                out[key] = out.get(key, 0) + n
        return out

    def _drain(self):
        """(the log-write probe's drain, whether the resets' maps were flipped too): every
        stage's maps swapped, then one grace period for all (one wake-up, not two), then
        read."""
        for s in self.stages:
            s.flip()
        time.sleep(GRACE_S)
        return self.probe.collect(), self.resets is not None

    def _add_resets(self, rates, ts, interval_s, flipped=False):
        """(rate records, the Interval's reset part, the stage's `stats` fields): reset
        counts in the rate records (a record per service with resets but no log writes)."""
        per_service, records, rstats, events = self.resets.interval(self.seq, ts, flipped)
        new_record = lambda name, r: model.rate_record(  # noqa: E731
            self.host, ts, seq=self.seq, interval=interval_s, service=name, pids=r.pids,
            comms=r.comms, log_writes=0, log_bytes=0, paths=[])
        add_load(rates, self.resets.load, new_record,
                 tcp_bytes=self.resets.probe.tcp_bytes_hook is not None)
        add_resets(rates, per_service, new_record)
        rates = self._fold(rates, ts)
        add_ratios(rates)
        return rates, (records, per_service, events), rstats

    def _fold(self, rates, ts):
        """At most max_services rate records, by owner and volume, the rest in one exact
        "(other)" record (collector/aggregate/slots.py): a user's thousand cheap names
        cost the stream, the detector and Prometheus one record, not a thousand."""
        kept, other = fold_rates(rates, self._owners(), self.max_services,
                                 self.max_per_owner)
        if other is not None:
            body, extra = other
            rec = model.rate_record(self.host, ts, **body)
            rec.update(extra)
            kept.append(rec)
        return kept

    def _owners(self):
        """{service: owner} for the fold: the key cache's (log writes) and, for a service
        it does not know or knows only as "unknown", the resets stage's of this interval
        (resets and TCP load): a system unit that serves TCP but never logs ranks as one."""
        owners = self.keys.owners
        staged = self.resets.owners if self.resets is not None else None
        if not staged:
            return owners
        extra = {s: o for s, o in staged.items()
                 if owners.get(s, UNKNOWN_OWNER) == UNKNOWN_OWNER}
        return ChainMap(extra, owners) if extra else owners

    def _enrich(self, counts):
        """(per-(service, path) accumulators, unresolved writes): collector.host.keycache
        keeps each key's answer across intervals, so a known key is a dict lookup."""
        self.resolver.start_drain()
        self.services.start_drain()       # also what the resets stage resolves, memoized
        return self.keys.enrich(counts, object())

    @property
    def boundary(self):
        """When the current interval started (clock())."""
        return self._last_boundary

    def run(self, duration_s, interval_s, on_interval, on_tick=None, tick_s=0.25,
            should_stop=lambda: False, wakeup_fd=None):
        """The interval loop (collector/pipeline/loop.py) over this collector."""
        run_loop(self, duration_s, interval_s, on_interval, on_tick, tick_s, should_stop,
                 wakeup_fd)

    def close(self):
        """Detach both probes and free what the run held; idempotent. Closing a
        tracepoint's attachment waits for RCU grace periods in the kernel, so every
        attachment fd of both probes is closed in one parallel batch first."""
        close_fds_parallel([fd for s in self.stages for fd in s.take_links()])
        for s in self.stages:
            s.close()
        self.keys.close()
