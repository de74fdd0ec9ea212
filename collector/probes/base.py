"""The lifecycle every probe shares, as the loader child and the daemon see it.

In the loader child: plan() (the probe's own: BTF offsets, tracepoint formats -> cflags
and what to attach) and plan_state() (what the plan found, sent to the daemon). In the
daemon: start_load()/finish_load() (or load()), adopt() of the handed-over fds, then per
interval flip() + collect() (drain() = both with the grace period between), events from
the ring buffer (poll_fd()/consume()/poll()), health(), close().

A probe names its maps and constants; its own parts are _adopt_state(state),
_on_event(data) and _collect(idle).
"""
import ctypes
import time

from collector.errors import ProbeUnavailable
from collector.probes import kernel, loader
from collector.probes.abi import abi
from collector.probes.libbpf import BatchDrain, RingBuffer
from collector.probes.maps import GRACE_S, HealthCounters


class Probe:
    name = label = None          # "logwrites", "log-write probe"
    ring_map = None              # the ring buffer of events
    count_maps = ()              # the two count maps the epoch flips between
    epoch = (None, 0)            # (control array map, index of the epoch in it)
    health_map = None            # per-CPU array of loss counters
    health_fields = {}           # health() name -> abi constant of its index
    max_health = None            # abi constant: the array's size

    def __init__(self):
        self.handover, self.maps, self._ring = None, {}, None
        self.attached = []
        self.compile_s = None
        self._epoch, self._idle = 0, 0
        self._health = HealthCounters(getattr(abi(), self.max_health))

    # loading -------------------------------------------------------------------------
    def start_load(self, timeout_s=loader.DEFAULT_TIMEOUT_S):
        """Start making the plan and compiling in a child; finish_load() adopts the fds."""
        kernel.require_environment()
        return loader.Pending(self.name, self.load_kwargs(), timeout_s)

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

    def health(self):
        """Per-counter increase since the previous call (lost counts, lost events...)."""
        delta = self._health.delta(self.maps[self.health_map])
        a = abi()
        return {name: delta[getattr(a, index)] for name, index in self.health_fields.items()}

    def close(self):
        """Detach every program and close the maps (idempotent)."""
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self.handover is not None:
            self.handover.close()
            self.handover = None
