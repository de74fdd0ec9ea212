"""`surgewatch tail` as a user who may not read the daemon's records or connect to its
socket: one line naming the path, its owner, group and mode, and the fix; exit 2
(collector.errors.NoAccess), never a traceback. Faked first, then for real: the CLI run
as nobody (setpriv) against a root-only directory and socket made here (no BPF)."""
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from collector.cli import main
from collector.errors import EXIT_USAGE, NoAccess
from collector.sinks.segments import SegmentStore
from collector.sinks.unixsock import UnixSocketSink
from tests.support.cli import cli_runner
from tests.unit.test_tail import meta, stats

SURGEWATCH = os.path.join(os.path.dirname(sys.executable), "surgewatch")
NOBODY = 65534


def denied(*_a, **_kw):
    raise PermissionError(13, "Permission denied")


def segdir(path):
    s = SegmentStore(path)
    s.set_meta(meta())
    s.write_interval([s._meta, stats(0, 1000.0)])
    s.close()
    return path


def test_a_directory_it_may_not_list_is_one_line_exit_2(tmp_path, monkeypatch):
    seg = segdir(tmp_path / "seg")
    os.chmod(seg, 0o700)
    monkeypatch.setattr("collector.records.segments.os.listdir", denied)
    res = cli_runner().invoke(main, ["tail", str(seg)])
    assert res.exit_code == EXIT_USAGE == 2
    owner = f"owner {_user(os.getuid())}, group {_group(os.getgid())}, mode 0700"
    assert res.stderr == (f"surgewatch: error: {seg}: permission denied ({owner}): run it "
                          "as root (sudo surgewatch tail)" + _join(os.getgid()) + "\n")


def test_a_socket_it_may_not_connect_to_is_one_line_exit_2(tmp_path, monkeypatch):
    import collector.sinks.unixsock as unixsock

    class Socket:
        def __init__(self, *a):
            pass

        settimeout = close = lambda self, *a: None
        connect = denied

    path = tmp_path / "s.sock"
    path.write_text("")
    monkeypatch.setattr(unixsock.socket, "socket", Socket)
    res = cli_runner().invoke(main, ["tail", "--socket", str(path)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.stderr.startswith(f"surgewatch: error: {path}: permission denied (owner ")
    assert "run it as root (sudo surgewatch tail --socket)" in res.stderr
    assert len(res.stderr.splitlines()) == 1


def test_the_group_is_named_when_it_is_not_roots(tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    os.chown(f, -1, NOBODY) if os.geteuid() == 0 else None
    gid = os.stat(f).st_gid
    assert str(NoAccess.of(str(f), "tail")).endswith("(sudo surgewatch tail)" + _join(gid))


def _user(uid):
    import pwd
    return pwd.getpwuid(uid).pw_name


def _group(gid):
    import grp
    return grp.getgrgid(gid).gr_name


def _join(gid):
    return f", or as a member of group {_group(gid)}" if gid != 0 else ""


# -- for real: an unprivileged process ---------------------------------------------------
@pytest.fixture
def root_only():
    """A directory nobody can reach (0755) holding a root-only segment directory (0700)
    and a stream socket of mode 0660 (root's), removed afterwards."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run the CLI as nobody")
    top = tempfile.mkdtemp(prefix="surgewatch-access-", dir="/tmp")
    os.chmod(top, 0o755)
    seg = segdir(os.path.join(top, "seg"))
    os.chmod(seg, 0o700)
    sink = UnixSocketSink(os.path.join(top, "run", "stream.sock"), host="h", mode=0o660)
    conf = os.path.join(top, "sw.toml")
    with open(conf, "w") as f:
        f.write(f'[outputs.segments]\ndir = "{seg}"\n')
    os.chmod(conf, 0o644)
    try:
        yield {"seg": seg, "sock": sink.path, "conf": conf}
    finally:
        sink.close()
        shutil.rmtree(top)


def as_nobody(*args):
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups", SURGEWATCH, *args], capture_output=True,
                          text=True, timeout=60, check=False, cwd="/")


@pytest.mark.parametrize("how", ["dir", "follow", "default", "socket"])
def test_tail_as_nobody_says_what_and_how_in_one_line(root_only, how):
    args, path, cmd = {
        "dir": (["tail", root_only["seg"]], root_only["seg"], "tail"),
        "follow": (["tail", "-f", root_only["seg"]], root_only["seg"], "tail"),
        "default": (["tail", "--config", root_only["conf"]], root_only["seg"], "tail"),
        "socket": (["tail", "--socket", root_only["sock"]], root_only["sock"],
                   "tail --socket"),
    }[how]
    res = as_nobody(*args)
    mode = "0700" if how != "socket" else "0660"
    assert (res.returncode, res.stdout) == (2, ""), res.stderr
    assert res.stderr == (f"surgewatch: error: {path}: permission denied (owner root, group "
                          f"root, mode {mode}): run it as root (sudo surgewatch {cmd})\n")
