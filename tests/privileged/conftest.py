"""Real BPF on the running kernel. These tests need root; in CI they must not skip."""
import functools
import os
import shutil
import time

import pytest

from tests.workloads.build import build


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    if os.environ.get("SURGEWATCH_REQUIRE_PRIVILEGED"):
        raise pytest.UsageError("privileged tests need root (SURGEWATCH_REQUIRE_PRIVILEGED is set)")
    skip = pytest.mark.skip(reason="needs root: run `make test` as root")
    for item in items:
        if "tests/privileged" in str(item.fspath):
            item.add_marker(skip)


# the socket channels' test paths, the harness's log rules name them; one directory per
# test run, so two suites side by side do not unlink each other's sockets
TEST_RUN = f"/run/surgewatch-test-{os.getpid()}"


@pytest.fixture(scope="session", autouse=True)
def _test_run_dir():
    yield
    shutil.rmtree(TEST_RUN, ignore_errors=True)


@pytest.fixture(scope="session")
def workload_bin(tmp_path_factory):
    d = tmp_path_factory.mktemp("bin")
    return lambda name: build(name, d)


class Harness:
    """A loaded log-write pipeline; collects per-(pid, path) totals over intervals."""

    def __init__(self, collector):
        self.collector = collector
        collector.begin()

    def settle(self):
        """Drain what happened so far and forget it (other tests' and host noise)."""
        self.collector.interval()

    def collect(self, intervals=2, gap=0.05):
        """Totals {(pid, path): [writes, bytes, comm, service]} over a few intervals."""
        totals, unresolved = {}, 0
        for _ in range(intervals):
            time.sleep(gap)
            self.collector.probe.poll(0)
            rates, stats = self.collector.interval()[:2]
            unresolved += stats["unresolved_writes"]
            for w in self.collector.last_writes:
                t = totals.setdefault((w.pid, w.path), [0, 0, w.comm, w.service])
                t[0] += w.writes
                t[1] += w.bytes
        self.unresolved = unresolved
        return totals

    def for_path(self, totals, path):
        return {pid: v for (pid, p), v in totals.items() if p == path}


@pytest.fixture(scope="session", params=["raw", "tracepoints", "fentry"])
def hook(request):
    """Every way of hooking writes must count exactly the same: the raw sys_enter hook, the
    syscall tracepoints, and fentry on vfs_write/vfs_writev/do_filp_open where the kernel
    allows function tracing (the Vagrant VM's 6.1; this project's hosts refuse it)."""
    if request.param == "fentry":
        why = fentry_refusal()
        if why:
            pytest.skip(f"this kernel refuses the fentry path: {why}")
    return request.param


def fentry_refusal():
    """Why the log-write probe cannot count on fentry here, or None."""
    from collector.probes import fentry, logwrites
    from collector.probes.btf import BTF

    return fentry.refusal(BTF.load(), logwrites.FENTRY_FUNCS)


def check_hook(probe, hook, fd_walk):
    """The probe counts on the hook the test asked for (a silent fallback would test
    nothing); the fentry path walks no fd table, so it runs once, with fd_walk "btf"."""
    if hook == "fentry" and fd_walk != "btf":
        pytest.skip("the fentry path walks no fd table: one fd_walk is enough")
    assert probe.hook_path == hook, (probe.hook_path, probe.hook_path_reason)
    if hook != "fentry":
        check_fd_walk(probe, fd_walk)


FD_WALKS = ("btf", "btf_slot_read", "probe_read")


@pytest.fixture(scope="module", params=FD_WALKS)
def fd_walk(request):
    """Every fd walk this kernel offers must count exactly the same (collector/probes/
    fdwalk.py): "btf" is what feature probing picks (on 6.18 with the fd slot loaded
    directly), "btf_slot_read" the btf walk with the slot as a probe read (what older
    verifiers get), "probe_read" the fallback; the last two forced through the
    SURGEWATCH_FD_WALK test seam (the loader child inherits it). Module scope: the variable
    is gone before the next test file runs."""
    from collector.probes.fdwalk import ENV

    if request.param == "btf_slot_read":
        why = _btf_walk_refusal()
        if why:
            pytest.skip(f"this kernel refuses the BTF fd walk: {why}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV, "auto" if request.param == "btf" else request.param)
        yield request.param


@functools.cache
def _btf_walk_refusal():
    """Why this kernel refuses the BTF walk (even with the slot probe-read), or None. Asked
    once per session: the answer is the running kernel's, and each asking compiles and loads
    a test program (~3.5 s under QEMU's software CPU, where CI's VM asked 10 times, most of
    them for fentry cases that then skip because the fentry path walks no fd table)."""
    from collector.probes import fdwalk, kernel, logwrites
    from collector.probes.btf import BTF

    fd_off = kernel.tracepoint_format("syscalls", "sys_enter_write")["fd"].offset
    return fdwalk.load_test_program(fdwalk.probe_program(logwrites.btf_macros(BTF.load()),
                                                         fd_off, slot_direct=False))


def check_fd_walk(probe, fd_walk):
    """The probe runs the walk the test asked for (a silent fallback would test nothing)."""
    if fd_walk == "btf" and probe.fd_walk != "btf":
        pytest.skip(f"this kernel offers no BTF fd walk: {probe.fd_walk_state}")
    if fd_walk == "btf_slot_read":
        assert (probe.fd_walk, probe.fd_walk_state.get("fd_slot")) == ("btf", "probe_read"), \
            probe.fd_walk_state
        return
    assert probe.fd_walk == fd_walk, probe.fd_walk_state


@pytest.fixture(scope="module")
def harness(hook, fd_walk):
    from collector.host.logdest import LogRules
    from collector.pipeline.build import build_collector

    rules = LogRules(journald_sockets=(f"{TEST_RUN}/journal.sock",),
                     syslog_sockets=(f"{TEST_RUN}/dev-log-link",),
                     journald_native_sockets=(f"{TEST_RUN}/native.sock",))
    if hook == "fentry" and fd_walk != "btf":
        pytest.skip("the fentry path walks no fd table: one fd_walk is enough")
    collector = build_collector(rules, probe_kwargs={"hook": hook})
    try:
        check_hook(collector.probe, hook, fd_walk)
        yield Harness(collector)
    finally:
        collector.probe.close()


# -- the resets probe (test_resets_exact.py, test_load_exact.py) ---------------------------

class ResetHarness:
    def __init__(self, probe):
        self.probe = probe
        self.events = []
        probe.on_event = self.events.append

    def settle(self):
        self.probe.poll(0)
        self.probe.drain()
        self.probe.health()
        self.events.clear()

    def collect(self, gap=0.05):
        """(counts, events, health) since settle()."""
        time.sleep(gap)
        counts = self.probe.drain().counts + self.probe.drain().counts
        self.probe.poll(0)
        events = list(self.events)
        self.events.clear()
        return counts, events, self.probe.health()


@pytest.fixture(scope="module", params=["tracepoints", "fentry"])
def reset_hook(request):
    """Both ways of recording owners in process context: syscall tracepoints (accept,
    send/recv, through the fd walk) and fentry (inet_csk_accept, tcp_sendmsg/recvmsg) where
    the kernel allows it (the Vagrant VM; refused on this project's hosts)."""
    if request.param == "fentry":
        from collector.probes import fentry, resets
        from collector.probes.btf import BTF

        why = fentry.refusal(BTF.load(), resets.FENTRY_FUNCS)
        if why:
            pytest.skip(f"this kernel refuses the fentry path: {why}")
    return request.param


@pytest.fixture(scope="module")
def resets(fd_walk, reset_hook):
    """On each fd walk the kernel offers (conftest: `fd_walk`): accept and send/recv find
    the socket through it, so owners depend on it; and on the fentry path (no fd walk:
    once)."""
    from collector.probes.resets import ResetProbe

    if reset_hook == "fentry" and fd_walk != "btf":
        pytest.skip("the fentry path walks no fd table: one fd_walk is enough")
    probe = ResetProbe(hook=reset_hook).load()
    try:
        assert probe.hook_path == reset_hook, probe.hook_path_reason
        if reset_hook == "tracepoints":
            check_fd_walk(probe, fd_walk)
        yield ResetHarness(probe)
    finally:
        probe.close()
