"""`surgewatch run` as the benchmarks attach it: a separate process, its msgpack stream on
a pipe (stdout), stopped by its pid. Measuring in the same process as a loaded bcc module would
measure that process's leftovers too (docs/performance.md, "method"). The process itself is
tests/support/daemon.py's `Daemon`; this only sets it up the benchmarks' way."""
from tests.support.daemon import Daemon


class BenchDaemon(Daemon):
    """Only stdout (msgpack) on; the log-write hook chosen by `hook`; pinned to `cpu` when
    given. Records carry their arrival times (`arrival`); stop() sets `stop_s`."""

    def __init__(self, workdir, logdir, interval=1.0, resets=False, hook="tracepoints",
                 cpu=None, env=None):
        super().__init__(workdir, logdir=logdir, interval=interval, stdout="msgpack",
                         resets=resets, env={"SURGEWATCH_WRITE_HOOK": hook, **(env or {})},
                         cpu=cpu)

    # the benchmarks count intervals from the start: the n-th stats record, its arrival
    wait_stats = Daemon.wait_interval
