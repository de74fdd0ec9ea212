"""Exact per-process TCP load (collector/bpf/resets.c "Load"): connections accepted, connections
connected, bytes sent into TCP sockets, on each hook path the kernel offers.

The server and the client are separate processes, so attribution is by pid: the
client's SYN_SENT -> ESTABLISHED runs in softirq (on loopback, often in the server's
task) and must still be counted for the client that called connect().
"""
import os
import socket
import textwrap

import pytest

from tests.privileged.conftest import ResetHarness
from tests.privileged.test_resets_exact import py

pytestmark = pytest.mark.privileged

# every way a server puts bytes into a TCP socket: send, sendall, sendmsg, write(2),
# sendfile(2); each connection gets PER_CONN bytes
SERVER = """
    import os, socket, sys
    n, fam, blob = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    family = socket.AF_INET6 if fam == "6" else socket.AF_INET
    host = "::1" if fam == "6" else "127.0.0.1"
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.bind((host, 0))
    srv.listen(256)
    print(srv.getsockname()[1], flush=True)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)      # not TCP: not load
    a, b = socket.socketpair()                                  # AF_UNIX: not load
    for _ in range(n):
        c, _ = srv.accept()
        assert c.recv(5) == b"hello"
        c.send(b"x" * 100)
        c.sendall(b"y" * 200_000)
        c.sendmsg([b"a" * 10, b"b" * 20])
        os.write(c.fileno(), b"z" * 7)
        with open(blob, "rb") as f:
            assert os.sendfile(c.fileno(), f.fileno(), 0, 4096) == 4096
        udp.sendto(b"u" * 50, ("127.0.0.1", 9))
        a.send(b"s" * 50)
        b.recv(64)
        c.shutdown(socket.SHUT_WR)
        c.recv(1)
        c.close()
    print("done", flush=True)
    """
PER_CONN = 100 + 200_000 + 30 + 7 + 4096

CLIENT = """
    import socket, sys
    n, fam, port, refused_port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    family = socket.AF_INET6 if fam == "6" else socket.AF_INET
    host = "::1" if fam == "6" else "127.0.0.1"
    for _ in range(3):                       # refused: SYN_SENT -> CLOSE, not connected
        c = socket.socket(family, socket.SOCK_STREAM)
        try:
            c.connect((host, refused_port))
        except ConnectionRefusedError:
            pass
        c.close()
    got = 0
    for _ in range(n):
        c = socket.socket(family, socket.SOCK_STREAM)
        c.connect((host, port))
        c.sendall(b"hello")
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += len(d)
        c.close()
    print(got, flush=True)
    """


def loads_of(harness):
    """{tgid: LoadCount summed} since settle() (two drains: both epoch maps)."""
    out = {}
    for _ in range(2):
        for lc in harness.probe.drain().loads:
            a = out.setdefault(lc.tgid, [0, 0, 0])
            a[0] += lc.accepted
            a[1] += lc.connected
            a[2] += lc.tcp_bytes
    return out


def free_port(family):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("fam", ["4", "6"])
def test_accepts_connects_and_tcp_bytes_exact_per_process(resets, fam, tmp_path):
    n = 20
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(4096))
    family = socket.AF_INET6 if fam == "6" else socket.AF_INET
    resets.settle()
    server = py(SERVER, n, fam, blob)
    port = int(server.stdout.readline())
    client = py(CLIENT, n, fam, port, free_port(family))
    assert int(client.stdout.readline()) == n * PER_CONN
    assert server.stdout.readline().strip() == "done"
    assert server.wait(timeout=30) == 0 and client.wait(timeout=30) == 0
    loads = loads_of(resets)
    sent = PER_CONN * n if resets.probe.tcp_bytes_hook else 0
    assert loads.get(server.pid) == [n, 0, sent], resets.probe.tcp_bytes_hook
    assert loads.get(client.pid) == [0, n, 5 * n if resets.probe.tcp_bytes_hook else 0]
    assert resets.probe.health()["loads_full"] == 0


def test_tcp_bytes_hook_is_named(resets):
    """Which hook counts TCP bytes is said (doctor/meta read it), and why when none."""
    p = resets.probe
    assert p.tcp_bytes_hook in ("fexit tcp_sendmsg", "sock:sock_send_length", None)
    assert (p.tcp_bytes_hook is None) == bool(p.tcp_bytes_reason)
    if p.hook_path == "fentry":
        assert p.tcp_bytes_hook == "fexit tcp_sendmsg"


def test_a_full_loads_map_is_counted_as_lost():
    """More processes with load in one interval than the map holds: each one not kept is
    a `loads_full` loss, never silent."""
    from collector.probes.resets import ResetProbe

    probe = ResetProbe(max_loads=2).load()
    try:
        h = ResetHarness(probe)
        h.settle()
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        code = textwrap.dedent("""
            import socket, sys
            c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
            c.close()
            print(0, flush=True)
            """)
        procs = [py(code, srv.getsockname()[1]) for _ in range(5)]
        for p in procs:
            p.stdout.readline()
            p.wait(timeout=30)
        conns = [srv.accept()[0] for _ in range(5)]
        for c in conns:
            c.close()
        srv.close()
        loads = loads_of(h)
        kept = sum(1 for p in procs if loads.get(p.pid, [0, 0, 0])[1] == 1)
        me_kept = loads.get(os.getpid(), [0])[0] == 5
        lost = probe.health()["loads_full"]
        # each client missing the map lost its one connect, this process its five accepts
        # (other processes' TCP load on the host may take slots and add losses: >=)
        assert kept + me_kept <= 2
        assert lost >= (5 - kept) + (0 if me_kept else 5)
    finally:
        probe.close()
