"""Loopback only: a free port (never 2024), and a server that aborts n connections of a
client (one RST sent by the server, one received by the client, per connection)."""
import socket
import subprocess
import sys


def free_port():
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port != 2024:
            return port


RESET_SERVER = """
import ctypes, socket, struct, sys, time
ctypes.CDLL(None).prctl(15, sys.argv[2].encode(), 0, 0, 0)   # PR_SET_NAME: its service
n = int(sys.argv[1])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(64)
print(srv.getsockname()[1], flush=True)
conns = [srv.accept()[0] for _ in range(n)]
for c in conns:
    assert c.recv(5) == b"hello"
time.sleep(0.3)
for c in conns:
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()                                  # RST instead of FIN
"""

RESET_CLIENT = """
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, sys.argv[3].encode(), 0, 0, 0)
n, port = int(sys.argv[1]), int(sys.argv[2])
conns = []
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(b"hello")
    conns.append(c)
got = 0
for c in conns:
    try:
        c.recv(16)
    except ConnectionResetError:
        got += 1
print(got, flush=True)
"""


def abort_connections(n, server_comm, server_cg, client_comm, client_cg):
    """Run RESET_SERVER (comm server_comm, in server_cg) and RESET_CLIENT against it over n
    connections. Returns (server port, finished client, server Popen): the client printed
    how many resets it received; the server exits 0 once it aborted them all."""
    server = subprocess.Popen([sys.executable, "-c", RESET_SERVER, str(n), server_comm],
                              stdout=subprocess.PIPE, text=True, preexec_fn=server_cg.enter)
    port = int(server.stdout.readline())
    client = subprocess.run([sys.executable, "-c", RESET_CLIENT, str(n), str(port),
                             client_comm], capture_output=True, text=True, timeout=60,
                            preexec_fn=client_cg.enter)
    return port, client, server
