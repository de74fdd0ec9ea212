"""collector/host/hostroot.py: which root the daemon reads the host's files in."""
import os

from collector.host import hostroot
from collector.host.hostroot import OWN, HostRoot, find_host_root


def test_our_own_root_when_asked():
    assert find_host_root("/") == OWN


def test_a_proc_root_that_is_ours_is_just_ours():
    # same root directory, same mount and cgroup namespaces: nothing to read elsewhere
    assert find_host_root("/proc/self/root") == OWN


def test_unreachable_root_falls_back_to_ours_with_the_reason(tmp_path):
    got = find_host_root(str(tmp_path / "missing"))
    assert got[:3] == OWN[:3]
    assert "No such file or directory" in got.note


def test_a_directory_holding_the_hosts_root_is_read_for_files_only(tmp_path):
    assert find_host_root(str(tmp_path) + "/") == \
        HostRoot(str(tmp_path), "/proc/self/mountinfo", "/")


def test_another_process_root_brings_its_mounts(monkeypatch, tmp_path):
    """/proc/PID/root of a process in another root (the host's PID 1 seen from a
    container): files under it, and its mountinfo, whose mount points are under it."""
    real_stat = os.stat

    def fake_stat(path, *a, **kw):
        return real_stat(tmp_path if path == "/proc/4242/root" else path, *a, **kw)

    monkeypatch.setattr(hostroot.os, "stat", fake_stat)
    monkeypatch.setattr(hostroot, "_ns", lambda proc, name: f"{proc}:{name}")
    assert find_host_root("/proc/4242/root") == \
        HostRoot("/proc/4242/root", "/proc/4242/mountinfo", "/proc/4242/root")


def test_same_root_in_another_cgroup_namespace_is_walked_there(monkeypatch):
    """Our root, but a private cgroup namespace (and maybe our own cgroup2 mount): the
    cgroup walk goes through PID's mounts."""
    monkeypatch.setattr(hostroot, "_ns", lambda proc, name:
                        f"{proc}:{name}" if name == "cgroup" else "mnt:[1]")
    me = f"/proc/{os.getpid()}"
    assert find_host_root(f"{me}/root") == HostRoot(f"{me}/root", f"{me}/mountinfo", f"{me}/root")
