"""Open-connection inventory from sock_diag on real loopback sockets."""
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.privileged

CLIENT = """
    import socket, sys, time
    c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    c.sendall(b"x")
    print(c.getsockname()[1], flush=True)
    sys.stdin.readline()
    """


def test_inventory_shows_idle_connection_with_owner_and_flags_it():
    from collector.host.procfs import ProcFS
    from collector.host.sockdiag import (
        ListenerLookup,
        inventory,
        socket_owners,
        tcp_connections,
    )

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    client = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CLIENT), str(port)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        cport = int(client.stdout.readline())
        conn, _ = srv.accept()
        assert conn.recv(1) == b"x"
        time.sleep(1.5)
        procfs = ProcFS()
        inv = inventory(tcp_connections(), socket_owners(procfs), lambda pid, comm: f"pid{pid}",
                        threshold_s=1.0)
        mine = [r for r in inv[f"pid{client.pid}"] if r["local"] == f"127.0.0.1:{cport}"]
        assert len(mine) == 1 and mine[0]["remote"] == f"127.0.0.1:{port}"
        assert 1.4 <= mine[0]["idle_s"] < 3.0 and mine[0]["at_risk"]
        server_side = [r for r in inv[f"pid{os.getpid()}"] if r["local"] == f"127.0.0.1:{port}"]
        assert len(server_side) == 1 and server_side[0]["at_risk"]
        inv = inventory(tcp_connections(), socket_owners(procfs), lambda pid, comm: f"pid{pid}",
                        threshold_s=300)
        assert not any(r["at_risk"] for r in inv[f"pid{client.pid}"])
        assert ListenerLookup(procfs).owner(port).pid == os.getpid()
        conn.close()
    finally:
        client.stdin.close()
        client.wait(timeout=10)
        srv.close()
