"""Exact message counts on the datagram channels (syslog, journald's native protocol) on
every write hook this kernel offers: one datagram sent to a configured socket path is one
message, whichever syscall sent it and whether the socket is connected or addresses each
datagram. The receivers are the test's own sockets; tests/e2e has rsyslog and journald.

The harness (conftest) configures syslog_sockets = /run/surgewatch-test-PID/dev-log-link, a
symlink to the socket the receiver binds (as /dev/log is to journald's dev-log), and
journald_native_sockets = /run/surgewatch-test-PID/native.sock.
"""
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from tests.privileged.conftest import TEST_RUN as RUN
from tests.support.unixrecv import Receiver

pytestmark = pytest.mark.privileged
SYSLOG_LINK, SYSLOG_REAL = f"{RUN}/dev-log-link", f"{RUN}/dev-log"
NATIVE = f"{RUN}/native.sock"


@pytest.fixture
def receivers():
    os.makedirs(RUN, exist_ok=True)
    syslog, native = Receiver(SYSLOG_REAL), Receiver(NATIVE)
    if os.path.lexists(SYSLOG_LINK):
        os.unlink(SYSLOG_LINK)
    os.symlink(SYSLOG_REAL, SYSLOG_LINK)
    yield syslog, native
    os.unlink(SYSLOG_LINK)
    syslog.close()
    native.close()


SENDER = textwrap.dedent("""
    import os, socket, sys
    link, native, other = sys.argv[1:4]
    msg = b"<13>Dec  2 03:00:00 test: hello\\n"          # 32 bytes
    c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    c.connect(link)                                    # as syslog(3) connects to /dev/log
    for _ in range(101):
        c.send(msg)                                    # sendto(2) without an address
    for _ in range(102):
        os.write(c.fileno(), msg)                      # write(2) on the connected socket
    for _ in range(103):
        c.sendmsg([msg[:10], msg[10:]])                # sendmsg(2), two iovecs, no name
    u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    for _ in range(104):
        u.sendto(msg, link)                            # sendto(2) addressed to the link
    for _ in range(105):
        u.sendto(msg, link.replace("dev-log-link", "dev-log"))   # to the real path
    for _ in range(106):                               # sd_journal_send's way
        u.sendmsg([b"MESSAGE=hi\\n", b"PRIORITY=6\\n"], [], 0, native)
    o = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    o.connect(other)
    for _ in range(50):                                # a datagram socket nobody configured
        o.send(msg)
    a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.bind(b"\\0surgewatch-test-abstract")
    for _ in range(5):                                 # abstract addresses never match (unread:
                                                       # fewer than max_dgram_qlen, 10)
        u.sendto(msg, b"\\0surgewatch-test-abstract")
    print("done", flush=True)
    sys.stdin.readline()                               # stay alive until drained
""")


def test_every_datagram_to_a_channel_counts_once(harness, receivers, tmp_path):
    syslog, native = receivers
    other = Receiver(str(tmp_path / "other.sock"))
    try:
        harness.settle()
        p = subprocess.Popen([sys.executable, "-c", SENDER, SYSLOG_LINK, NATIVE, other.path],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert p.stdout.readline() == b"done\n"
        totals = harness.collect()
        p.stdin.close()
        assert p.wait() == 0
    finally:
        other.close()
    mine = {path: v[:2] for (pid, path), v in totals.items() if pid == p.pid}
    assert mine == {
        f"syslog:{SYSLOG_LINK}": [101 + 102 + 103 + 104 + 105, (101 + 102 + 103 + 104 + 105) * 32],
        f"journald:{NATIVE}": [106, 106 * 22],
    }, mine
    assert len(syslog.got) == 515 and len(native.got) == 106    # they were really sent


def test_channel_created_after_start_is_matched(harness, tmp_path):
    """The symlink to the socket appears after the probe loaded (a syslog daemon started
    later): the next drain gives the kernel its target, and connected sends count."""
    os.makedirs(RUN, exist_ok=True)
    for path in (SYSLOG_LINK,):
        if os.path.lexists(path):
            os.unlink(path)
    harness.settle()                    # a drain with no link: only the link's own path known
    real = Receiver(SYSLOG_REAL)
    os.symlink(SYSLOG_REAL, SYSLOG_LINK)
    try:
        harness.settle()                # this drain sees the link and updates the kernel
        p = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
            import socket, sys
            c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            c.connect(sys.argv[1])
            for _ in range(77):
                c.send(b"late\\n")
            print("done", flush=True)
            sys.stdin.readline()
            """), SYSLOG_LINK], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert p.stdout.readline() == b"done\n"
        totals = harness.collect()
        p.stdin.close()
        assert p.wait() == 0
    finally:
        os.unlink(SYSLOG_LINK)
        real.close()
    assert harness.for_path(totals, f"syslog:{SYSLOG_LINK}")[p.pid][:2] == [77, 77 * 5]
