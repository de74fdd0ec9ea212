"""ProcFS on a recorded /proc tree (tests/unit/fixtures/proc); fd and cwd links are made
per test in a copy, since /proc's links point at pseudo files like "socket:[123]"."""
import errno
import os
import shutil
from pathlib import Path

import pytest

from collector.errors import (
    AccessDenied,
    EnvironmentProblem,
    HostLookupError,
    HostOSError,
    HostResourceError,
    NoSuchProcess,
)
from collector.host.procfs import ProcFS

FIXTURES = Path(__file__).parent / "fixtures" / "proc"
LONG_LOG = "/var/log/" + "/".join(["d" * 200] * 15) + "/app.log"  # ~3 KB, > NAME_MAX
FDS_812 = {
    0: "/dev/null",
    1: "pipe:[31337]",
    2: "socket:[48121]",
    5: "/var/log/nginx/access.log",
    6: "/var/log/nginx/error.log.1 (deleted)",
    7: "anon_inode:[eventpoll]",
    9: LONG_LOG,
}


@pytest.fixture
def proc(tmp_path):
    root = tmp_path / "proc"
    shutil.copytree(FIXTURES, root, symlinks=True)
    (root / "812" / "fd").mkdir()
    for fd, target in FDS_812.items():
        os.symlink(target, root / "812" / "fd" / str(fd))
    os.symlink("/srv/www root", root / "812" / "cwd")
    return ProcFS(root=str(root))


def test_default_root_is_proc():
    assert ProcFS().root == "/proc"


def test_pids_lists_only_numeric_entries(proc):
    os.mkdir(os.path.join(proc.root, "self-ish"))
    (Path(proc.root) / "uptime").write_text("1.0 2.0\n")
    assert proc.pids() == [1, 812, 2301, 2302, 2303, 2304]


def test_comm_strips_the_kernel_newline_only(proc):
    assert proc.comm(812) == "nginx"
    assert proc.comm(2301) == "evil) (x y"
    assert proc.comm(2302) == "two\nlines"  # a newline inside the name is kept


def test_comm_with_invalid_utf8_is_replaced_not_fatal(proc):
    assert proc.comm(2303) == "caf\ufffd\ufffd"


def test_comm_ending_in_newline_keeps_its_own_newline(proc):
    Path(proc.root, "2304", "comm").write_bytes(b"sh\n\n")
    assert proc.comm(2304) == "sh\n"


def test_cgroup_returns_raw_lines(proc):
    lines = proc.cgroup(812)
    assert lines[0] == "9:name=systemd:/system.slice/nginx.service"
    assert lines[-1] == "0::/system.slice/nginx.service"
    assert len(lines) == 10


def test_cgroup_splits_on_newline_only(proc):
    Path(proc.root, "2304", "cgroup").write_bytes(b"0::/odd\rname\x1cdir\n")
    assert proc.cgroup(2304) == ["0::/odd\rname\x1cdir"]


@pytest.mark.parametrize("pid, start", [(1, 7), (812, 1504), (2301, 88213), (2302, 88950),
                                        (2303, 90001)])
def test_start_time_is_field_22_whatever_comm_contains(proc, pid, start):
    assert proc.start_time(pid) == start


def test_start_time_with_comm_made_to_look_like_fields(proc):
    fields = " ".join(str(n) for n in range(3, 53))
    stat = f"2304 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777) {fields}\n"
    Path(proc.root, "2304", "stat").write_text(stat)
    assert proc.start_time(2304) == 22


def test_malformed_stat_is_a_host_lookup_error(proc):
    Path(proc.root, "2304", "stat").write_text("2304 (trunc\n")
    with pytest.raises(HostLookupError, match="malformed"):
        proc.start_time(2304)


def test_fd_target_reads_the_link(proc):
    assert proc.fd_target(812, 5) == "/var/log/nginx/access.log"
    assert proc.fd_target(812, 2) == "socket:[48121]"
    assert proc.fd_target(812, 9) == LONG_LOG


def test_fds_maps_every_fd(proc):
    assert proc.fds(812) == FDS_812


def test_cwd(proc):
    assert proc.cwd(812) == "/srv/www root"


def test_closed_fd_of_live_process_is_not_a_vanished_process(proc):
    with pytest.raises(HostLookupError) as info:
        proc.fd_target(812, 42)
    assert not isinstance(info.value, (NoSuchProcess, AccessDenied))


def test_fds_skips_an_fd_closed_while_listing(proc, monkeypatch):
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p: real_listdir(p) + ["42"])
    assert proc.fds(812) == FDS_812


@pytest.mark.parametrize("read", [
    lambda p: p.comm(4242),
    lambda p: p.cgroup(4242),
    lambda p: p.start_time(4242),
    lambda p: p.fd_target(4242, 1),
    lambda p: p.fds(4242),
    lambda p: p.cwd(4242),
])
def test_vanished_pid_raises_no_such_process(proc, read):
    with pytest.raises(NoSuchProcess) as info:
        read(proc)
    assert info.value.pid == 4242


def test_process_exiting_between_fd_list_and_readlink(proc, monkeypatch):
    real_readlink = os.readlink

    def exit_then_readlink(path):
        shutil.rmtree(os.path.join(proc.root, "812"))
        return real_readlink(path)

    monkeypatch.setattr(os, "readlink", exit_then_readlink)
    with pytest.raises(NoSuchProcess):
        proc.fds(812)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM])
def test_permission_errors_raise_access_denied(proc, monkeypatch, code):
    # Tests may run as root, which file modes do not stop: fake the kernel's answer.
    def denied(path):
        raise OSError(code, os.strerror(code), path)

    monkeypatch.setattr(os, "readlink", denied)
    with pytest.raises(AccessDenied) as info:
        proc.fd_target(812, 5)
    assert info.value.pid == 812
    assert "fd 5" in str(info.value)


def test_esrch_raises_no_such_process(proc, monkeypatch):
    def gone(path):
        raise OSError(errno.ESRCH, os.strerror(errno.ESRCH), path)

    monkeypatch.setattr(os, "readlink", gone)
    shutil.rmtree(os.path.join(proc.root, "812"))
    with pytest.raises(NoSuchProcess):
        proc.cwd(812)


@pytest.mark.parametrize("err, typed", [
    (errno.EIO, HostOSError), (errno.ELOOP, HostOSError),
    (errno.ENOENT, NoSuchProcess), (errno.ESRCH, NoSuchProcess),
    (errno.EACCES, AccessDenied), (errno.EPERM, AccessDenied),
    (errno.EMFILE, HostResourceError), (errno.ENFILE, HostResourceError),
    (errno.ENOMEM, HostResourceError), (errno.ENOBUFS, HostResourceError)])
@pytest.mark.parametrize("read", ["comm", "cgroup", "start_time", "fds"])
def test_every_os_error_becomes_a_typed_error(proc, monkeypatch, err, typed, read):
    """No bare OSError leaves ProcFS: a resource error (the daemon out of fds or memory,
    which a hostile neighbour can cause) is a HostResourceError, which is deliberately no
    HostLookupError ("gone"/"hidden" would name the process some other way)."""
    def failing(*args, **kwargs):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr("builtins.open", failing)
    monkeypatch.setattr("os.listdir", failing)
    with pytest.raises(typed) as info:
        getattr(proc, read)(812)
    assert not isinstance(info.value, OSError)
    assert isinstance(info.value, HostLookupError) == (typed is not HostResourceError)
    if typed in (HostOSError, HostResourceError):
        assert info.value.errno == err and "process 812" in str(info.value)


def test_listing_pids_out_of_fds_is_a_resource_error(proc, monkeypatch):
    def emfile(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr("os.listdir", emfile)
    with pytest.raises(HostResourceError):
        proc.pids()


def test_missing_proc_is_an_environment_problem(tmp_path):
    with pytest.raises(EnvironmentProblem, match="cannot list processes"):
        ProcFS(str(tmp_path / "nowhere")).pids()


def test_pid_cannot_escape_its_directory(proc):
    with pytest.raises(ValueError):
        proc.comm("../812")
