"""collector.probes.memcg on fixture cgroup trees (tests/unit/fixtures/memcg), and the one
line a loader child killed by SIGKILL is reported with (collector.probes.loader)."""
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from collector.errors import EXIT_USAGE, ProbeUnavailable
from collector.probes.memcg import MemoryCgroup, MemoryState, size_text
from collector.probes import loader

FIXTURES = Path(__file__).parent / "fixtures" / "memcg"


def tree(tmp_path, name):
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root)
    return root


def test_v2_limit_and_oom_kills_of_the_own_cgroup(tmp_path):
    root = tree(tmp_path, "v2")
    assert MemoryCgroup(str(root)).state() == MemoryState(
        104857600, "/system.slice/surgewatch.service", 1, "v2", 31)
    # a smaller limit higher up (a slice) is the one that binds
    (root / "sys/fs/cgroup/system.slice/memory.max").write_text("52428800\n")
    assert MemoryCgroup(str(root)).state().limit_cgroup == "/system.slice"
    # no limit anywhere: limit None, the counter still read
    for p in root.rglob("memory.max"):
        p.write_text("max\n")
    assert MemoryCgroup(str(root)).state() == MemoryState(None, None, 1, "v2", 31)


def test_hybrid_host_reads_the_v1_memory_controller(tmp_path):
    """A hybrid host (this project's CI sandbox): cgroup2 at .../unified holds no memory
    controller; v1's memory hierarchy does (limit_in_bytes, oom_control)."""
    state = MemoryCgroup(str(tree(tmp_path, "hybrid"))).state()
    assert state == MemoryState(536870912, "/process_api", 2, "v1", 9)     # failcnts 7 + 2


def test_unreadable_is_none_never_an_error(tmp_path):
    root = tree(tmp_path, "v2")
    (root / "sys/fs/cgroup/system.slice/surgewatch.service/memory.events").unlink()
    assert MemoryCgroup(str(root)).state() == MemoryState(
        104857600, "/system.slice/surgewatch.service", None, "v2")
    shutil.rmtree(root / "sys")
    assert MemoryCgroup(str(root)).state() == MemoryState(None, None, None, "v2")
    shutil.rmtree(root / "proc")
    assert MemoryCgroup(str(root)).state() == MemoryState()
    assert MemoryCgroup(str(tmp_path / "nothing")).state() == MemoryState()


def test_a_cgroup_outside_a_bind_mounted_subtree_is_not_guessed(tmp_path):
    root = tree(tmp_path, "v2")
    mi = root / "proc/self/mountinfo"
    mi.write_text(mi.read_text().replace(" / /sys/fs/cgroup ", " /other /sys/fs/cgroup "))
    assert MemoryCgroup(str(root)).state() == MemoryState(version="v2")


@pytest.mark.parametrize("n,text", [(104857600, "100 MiB"), (536870912, "512 MiB"),
                                    (1610612736, "1.5 GiB"), (100000000, "95.4 MiB"),
                                    (512, "512 B")])
def test_size_text(n, text):
    assert size_text(n) == text


LABEL = "log-write probe"
HEAD = "log-write probe: the loader died while compiling (killed by SIGKILL); "


def test_killed_under_a_memory_limit_names_the_limit_and_the_fix(tmp_path):
    """The issue's case: a 100 MB memory cgroup; its oom_kill counter rose while the child
    compiled. One line: problem and fix."""
    root = tree(tmp_path, "v2")
    events = root / "sys/fs/cgroup/system.slice/surgewatch.service/memory.events"
    events.write_text(events.read_text().replace("oom_kill 1", "oom_kill 3"))
    memory = MemoryCgroup(str(root))
    before = memory.state()
    events.write_text(events.read_text().replace("oom_kill 3", "oom_kill 4"))
    line = loader.killed_message(LABEL, before, memory.state())
    assert line == HEAD + (
        "its cgroup hit its memory limit (memory.max 100 MiB on "
        "/system.slice/surgewatch.service, oom_kill 1): the loader needs ~250 MB while "
        "compiling; fix: raise MemoryMax= or the container's memory limit")
    assert "\n" not in line and "doctor" not in line


def test_killed_messages_by_what_is_known():
    limited = MemoryState(100 << 20, "/app", None, "v1")
    # counter unchanged: not memory, the old advice
    assert loader.killed_message(LABEL, MemoryState(oom_kills=5), MemoryState(oom_kills=5)) \
        == HEAD + ("not by the OOM killer (oom_kill unchanged in its cgroup); nothing stays "
                   "attached; fix: run `surgewatch doctor`")
    # a limit but no counter: named as likely
    assert loader.killed_message(LABEL, limited, limited) == HEAD + (
        "its cgroup has a memory limit, likely hit (memory.limit_in_bytes 100 MiB on /app): "
        "the loader needs ~250 MB while compiling; fix: raise MemoryMax= or the container's "
        "memory limit")
    # an OOM kill with no limit on the path: the host is out of memory
    assert loader.killed_message(LABEL, MemoryState(None, None, 0, "v2"),
                                 MemoryState(None, None, 1, "v2")) == HEAD + (
        "the OOM killer ended it (oom_kill 1; no memory limit on its cgroup: the host ran "
        "out of memory): the loader needs ~250 MB while compiling; fix: free memory on "
        "the host")
    # nothing readable: memory named as the usual cause, doctor as the fallback
    assert loader.killed_message(LABEL, MemoryState(), MemoryState()) == HEAD + (
        "most often the OOM killer under a memory limit (the cgroup's memory files are not "
        "readable here): the loader needs ~250 MB while compiling; fix: raise MemoryMax= or "
        "the container's memory limit, else run `surgewatch doctor`")


class _Counting:
    """A MemoryCgroup whose counter rises by one between the two reads."""

    def __init__(self):
        self.reads = 0

    def state(self):
        self.reads += 1
        return MemoryState(100 << 20, "/svc", self.reads, "v2")


def test_pending_reports_a_sigkilled_child_with_its_cgroup(monkeypatch):
    """Pending end to end with a child that SIGKILLs itself (no bcc, no privileges): the
    error is a ProbeUnavailable (exit 2, as for every load failure), one line."""
    script = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    real_popen = subprocess.Popen

    def popen(argv, **kw):
        return real_popen([sys.executable, "-c", script], **kw)

    monkeypatch.setattr(loader.subprocess, "Popen", popen)
    memory = _Counting()
    pending = loader.Pending("logwrites", {}, timeout_s=60, memory=memory)
    with pytest.raises(ProbeUnavailable) as err:
        pending.wait()
    assert err.value.exit_code == EXIT_USAGE
    assert str(err.value) == HEAD + (
        "its cgroup hit its memory limit (memory.max 100 MiB on /svc, oom_kill 1): the "
        "loader needs ~250 MB while compiling; fix: raise MemoryMax= or the container's "
        "memory limit")
    assert pending.proc.returncode == -signal.SIGKILL


def test_a_failed_compile_while_the_limit_was_hit_names_the_limit():
    before = MemoryState(100 << 20, "/app", 0, "v1", 3)
    assert loader.limit_hit_message(LABEL, before, MemoryState(100 << 20, "/app", 0, "v1", 9)) \
        == (f"{LABEL}: the loader failed while compiling; its cgroup hit its memory limit "
            "(memory.limit_in_bytes 100 MiB on /app): the loader needs ~250 MB while "
            "compiling; fix: raise MemoryMax= or the container's memory limit")
    assert loader.limit_hit_message(LABEL, before, before) is None     # not hit meanwhile
    assert loader.limit_hit_message(LABEL, before, MemoryState(100 << 20, "/app", 1, "v1", 3)) \
        .startswith(f"{LABEL}: the loader failed while compiling; its cgroup hit")  # a kill
    assert loader.limit_hit_message(LABEL, MemoryState(), MemoryState()) is None
    assert loader.limit_hit_message(LABEL, MemoryState(limit_hits=0),
                                    MemoryState(limit_hits=5)) is None      # no limit
