"""collector.pipeline.runtime.Collector: counts made while loading are dropped, counts made after
begin() (which callers do before announcing the probes) are never dropped."""
from collector.probes.logwrite_counts import WriteCount
from collector.pipeline.runtime import Collector
from tests.support.probes import WriteProbeDouble


class Clock:
    t = 100.0

    def __call__(self):
        return self.t


class FakeProbe(WriteProbeDouble):
    """Each drain returns what was written since the previous one."""

    def write(self, n):
        self.counts.append(WriteCount(7, 3, 1, 11, 0, 1, n, n * 10, 0, "app"))

    def collect(self):
        out = super().collect()
        self.counts = []
        return out


class Resolver:
    def start_drain(self):
        pass

    def destination(self, _count):
        return "/var/log/app.log"


class Services:
    def start_drain(self):
        pass

    def end_drain(self):
        pass

    def resolve(self, _pid, comm, _cgroup_id=None):
        return comm


def test_load_time_counts_dropped_but_not_those_after_begin():
    clock, probe = Clock(), FakeProbe()
    c = Collector(probe, Resolver(), Services(), host="h", clock=clock, wallclock=clock)
    probe.write(500)                     # while bcc compiled: dropped by begin()
    c.begin()
    probe.write(40)                      # after begin, before run(): e.g. meta written
    got = []

    def on_interval(iv):
        got.append(sum(r["log_writes"] for r in iv.rates))
        clock.t += 1.0

    clock.t += 1.0
    c.run(1.0, 1.0, on_interval, tick_s=0)
    assert got == [40]
    assert c.begun
