"""PID reuse (docs/reliability.md): a process writes its log and exits, and a new process
gets the very same pid (clone3 with set_tid, tests/workloads/pidreuse.c) and writes
another log, all within one interval. At the drain the pid belongs to the second
process; the first one's writes must keep the first one's name."""
import subprocess

import pytest

pytestmark = pytest.mark.privileged


def test_reused_pid_in_one_interval_keeps_each_process_name(tmp_path, workload_bin):
    from collector.host.logdest import LogRules
    from collector.pipeline.build import build_collector
    from tests.privileged.conftest import Harness

    exe = workload_bin("pidreuse")
    logs = tmp_path / "logs"
    logs.mkdir()
    a_log, b_log = logs / "a.log", logs / "b.log"
    rules = LogRules(dirs=(str(logs) + "/",), globs=(), journald_sockets=())
    collector = build_collector(rules)
    try:
        h = Harness(collector)
        h.settle()
        p = subprocess.Popen([exe, "swreuse_a", str(a_log), "123", "swreuse_b", str(b_log),
                              "456"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        pid = int(p.stdout.readline())          # B is alive, with A's old pid
        totals = h.collect(intervals=2)
        p.stdin.close()
        assert p.wait(timeout=10) == 0
    finally:
        collector.probe.close()
    a = h.for_path(totals, str(a_log))
    b = h.for_path(totals, str(b_log))
    assert set(a) == {pid} and set(b) == {pid}
    assert a[pid][0] == 123 and b[pid][0] == 456
    assert b[pid][2] == "swreuse_b"
    assert a[pid][2] == "swreuse_a", f"A's writes named after the pid's new owner: {a[pid]}"
