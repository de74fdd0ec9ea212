"""The probe contract: the lifecycle every probe shares, as the loader child and the
daemon see it, and what every probe says of itself.

In the loader child: plan() (the probe's own: BTF offsets, tracepoint formats -> cflags
and what to attach) and plan_state() (what the plan found, sent to the daemon). In the
daemon: start_load()/finish_load() (or load()), adopt() of the handed-over fds, then per
interval flip() + collect() (drain() = both with the grace period between), events from
the ring buffer (poll_fd()/consume()/poll()), health(), close().

What it says of itself: meta() (its entry in the `meta` record: what it attached, the hook
it counts on and why, docs/stream.md), checks(host) (its lines in `surgewatch doctor`), and
collect()/drain() return a typed result of the interval (its own Drain class), never side
attributes. A probe is registered once, in collector/probes/registry.py.

A probe names its maps and constants; its own parts are _adopt_state(state),
_on_event(data), _collect(idle) and _meta().
"""
import ctypes
import time

from collector.errors import ProbeUnavailable
from collector.probes import kernel, loader
from collector.probes.abi import abi
from collector.probes.libbpf import BatchDrain, RingBuffer, runs_missed
from collector.probes.maps import GRACE_S, HealthCounters


class Probe:
    name = label = None          # "logwrites", "log-write probe"
    ring_map = None              # the ring buffer of events
    count_maps = ()              # the two count maps the epoch flips between
    epoch = (None, 0)            # (control array map, index of the epoch in it)
    health_map = None            # per-CPU array of loss counters
    health_fields = {}           # health() name -> abi constant of its index
    max_health = None            # abi constant: the array's size
    fentry_funcs = ()            # kernel functions its fentry path hooks (all in BTF)

    def __init__(self):
        self.handover, self.maps, self._ring = None, {}, None
        self.attached = []
        self.compile_s = self.programs = None
        self.hook_path = None        # what it counts on: "fentry", "tracepoints" or "raw"
        self.hook_path_reason = None     # why not fentry, when fentry was wanted
        self.fd_walk, self.fd_walk_state = None, {}     # which fd walk: fdwalk.py
        self._epoch, self._idle = 0, 0
        self._health = HealthCounters(getattr(abi(), self.max_health))
        self._missed_seen = {}       # program name -> runs_missed at the last call

    # loading -------------------------------------------------------------------------
    def start_load(self, timeout_s=loader.DEFAULT_TIMEOUT_S, cache_dir=None):
        """Start making the plan and compiling (or loading what cache_dir keeps) in a
        child; finish_load() adopts the fds."""
        kernel.require_environment()
        return loader.Pending(self.name, self.load_kwargs(), timeout_s, cache_dir=cache_dir)

    def finish_load(self, pending):
        try:
            handover = pending.wait()
        except loader.LoadFailed as e:
            if e.stage == "plan":                  # already one line naming the fix
                raise ProbeUnavailable(e.detail) from None
            if e.stage == "attach":
                raise ProbeUnavailable(f"{self.label}: cannot attach {e.tp} ({e.detail}); "
                                       "fix: run `surgewatch doctor` to see what this host "
                                       "lacks") from None
            raise ProbeUnavailable(f"{self.label} failed to compile/load: {e.detail}") \
                from None
        self.adopt(handover)
        return self

    def load(self):
        return self.finish_load(self.start_load())

    def adopt(self, handover):
        """Take over what the loader child handed over."""
        self.handover, self.maps = handover, handover.maps
        self.compile_s = handover.info.get("compile_s")
        self.programs = handover.info.get("programs")       # "compiled" or "stored"
        self.attached = list(handover.links)
        self._adopt_state(handover.info["state"])
        self._ring = RingBuffer(self.maps[self.ring_map], self._on_event)
        self._drains = [BatchDrain(self.maps[m]) for m in self.count_maps]

    # events --------------------------------------------------------------------------
    def poll_fd(self):
        """An fd that polls readable when events wait in the ring buffer."""
        return self._ring.fileno()

    def consume(self):
        """Deliver every pending event now, without waiting."""
        self._ring.consume()

    def poll(self, timeout_ms):
        """Deliver pending events, waiting at most timeout_ms."""
        self._ring.poll(timeout_ms)

    # counts --------------------------------------------------------------------------
    def drain(self, grace_s=GRACE_S):
        """Swap count maps, let in-flight programs finish, read and clear the idle one."""
        self.flip()
        time.sleep(grace_s)      # a tracepoint program runs for microseconds
        return self.collect()

    def flip(self):
        """Point the programs at the other count map (the first half of drain())."""
        self._ring.consume()
        self._idle = self._epoch & 1
        self._epoch += 1
        ctl, index = self.epoch
        self.maps[ctl].update(ctypes.c_uint32(index), ctypes.c_uint32(self._epoch))

    def collect(self):
        """Read and clear the map flip() retired, once in-flight programs are done."""
        self._ring.consume()
        return self._collect(self._idle)

    def _drained_bytes(self, idle, drains=None):
        """(key bytes, value bytes) of the retired map (of `drains`, default the count
        maps'), emptied."""
        drain = (drains or self._drains)[idle]
        raw = drain.drain()
        if raw is None:                      # no batch ops (< 5.6): key by key
            pairs = drain.drain_slow()
            return b"".join(k for k, _ in pairs), b"".join(v for _, v in pairs)
        keys, vals = raw
        return bytes(keys), bytes(vals)

    # what it says of itself ------------------------------------------------------------
    def meta(self):
        """Its entry in the `meta` record (docs/stream.md): what it attached, which paths
        it took and why."""
        out = {"enabled": True, "tracepoints": list(self.attached)}
        fields = {"hook": self.hook_path, **self._meta_aliases(),
                  "hook_reason": self.hook_path_reason, "fd_walk": self.fd_walk,
                  "programs": self.programs,
                  **self._meta()}
        out.update((k, v) for k, v in fields.items() if v is not None)
        for key in ("fd_slot", "fd_walk_reason"):
            if self.fd_walk_state.get(key):
                out[key] = self.fd_walk_state[key]
        return out

    def _meta_aliases(self):
        return {}

    def _meta(self):
        """The probe's own meta fields (None: left out)."""
        return {}

    @classmethod
    def checks(cls, host):
        """Its lines in `surgewatch doctor` (collector.probes.checks.Check) on this host
        (a DoctorHost)."""
        return []

    def health(self):
        """Per-counter increase since the previous call (lost counts, lost events...)."""
        delta = self._health.delta(self.maps[self.health_map])
        a = abi()
        return {name: delta[getattr(a, index)] for name, index in self.health_fields.items()}

    def runs_missed(self):
        """Runs of its programs the kernel skipped since the previous call (a BPF program
        was already running on that CPU): writes or resets those runs would have counted
        are missing. A program whose info cannot be read is left out."""
        total = 0
        for name, fd in (self.handover.progs.items() if self.handover is not None else ()):
            try:
                now = runs_missed(fd)
            except OSError:
                continue
            total += max(0, now - self._missed_seen.get(name, 0))
            self._missed_seen[name] = now
        return total

    def take_links(self):
        """The attachment fds, handed to the caller to close (every probe's at once, in
        parallel: each close waits for RCU grace periods); close() then skips them."""
        if self.handover is None:
            return []
        fds, self.handover.links = list(self.handover.links.values()), {}
        return fds

    def close(self):
        """Detach every program and close the maps (idempotent)."""
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self.handover is not None:
            self.handover.close()
            self.handover = None
