"""The frontend service of the incident: a pool of keep-alive HTTP connections through the
load balancer, bursts of requests with idle gaps, and, like the code in the incident, no
retry when a pooled connection turns out to be reset: the request fails, the connection is
replaced for the next burst.

    frontend_client.py HOST:PORT POOL EVENTS_FILE N:GAP [N:GAP ...]

Each N:GAP phase sends N bursts (one request on every pooled connection), sleeping GAP
seconds after each. Every request and every connection is written to EVENTS_FILE as a
JSON line (wall-clock `ts`, connection's local port), the tests' ground truth.
"""
import json
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: backend\r\nUser-Agent: frontend\r\n\r\n"


def read_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionResetError("connection closed by peer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionResetError("connection closed by peer")
        body += chunk
    return head.split(b"\r\n")[0].decode()


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    pool_size = int(sys.argv[2])
    events = open(sys.argv[3], "a", buffering=1)
    phases = [(int(n), float(g)) for n, g in (p.split(":") for p in sys.argv[4:])]

    def event(**kw):
        kw["ts"] = time.time()
        events.write(json.dumps(kw) + "\n")

    pool = [None] * pool_size
    burst = 0
    for phase, (bursts, gap) in enumerate(phases):
        for _ in range(bursts):
            for i in range(pool_size):
                if pool[i] is None:
                    s = socket.create_connection((host, int(port)), timeout=5)
                    pool[i] = s
                    event(kind="connect", slot=i, lport=s.getsockname()[1])
                s = pool[i]
                lport = s.getsockname()[1]
                try:
                    s.sendall(REQUEST)
                    status = read_response(s)
                    event(kind="request", slot=i, lport=lport, ok=True, status=status,
                          phase=phase, burst=burst)
                except OSError as e:          # reset (or closed): no retry
                    event(kind="request", slot=i, lport=lport, ok=False, error=type(e).__name__,
                          errno=e.errno, phase=phase, burst=burst)
                    s.close()
                    pool[i] = None
            event(kind="idle", phase=phase, burst=burst, gap=gap)
            burst += 1
            time.sleep(gap)
    event(kind="done")
    for s in pool:
        if s is not None:
            s.close()


if __name__ == "__main__":
    main()
