"""A frontend whose pooled connections a balancer's idle timeout resets, for
tests/e2e/test_idle_timeout_named.py.

    idle_pool_client.py HOST:PORT POOL ROUNDS HOLD_S KEEP KEEP_AT EVENTS_FILE

ROUNDS times: open POOL connections, send one request on each, then leave them idle for
HOLD_S seconds (longer than the balancer's timeout: it resets them) and close them. Then,
at wall-clock time KEEP_AT, open KEEP connections, one request each, and leave them idle
until killed. Each step is a JSON line in EVENTS_FILE (wall-clock `ts`, local ports).
"""
import json
import socket
import sys
import time

from frontend_client import REQUEST, read_response     # (this script's own directory)


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    pool, rounds, hold = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    keep, keep_at = int(sys.argv[5]), float(sys.argv[6])
    events = open(sys.argv[7], "a", buffering=1)

    def event(**kw):
        kw["ts"] = time.time()
        events.write(json.dumps(kw) + "\n")

    def open_and_use(n):
        conns = [socket.create_connection((host, int(port)), timeout=5) for _ in range(n)]
        for s in conns:
            s.sendall(REQUEST)
            read_response(s)
        return conns

    for r in range(rounds):
        conns = open_and_use(pool)
        event(kind="idle", round=r, lports=[s.getsockname()[1] for s in conns])
        time.sleep(hold)
        for s in conns:
            s.close()
    time.sleep(max(0.0, keep_at - time.time()))
    kept = open_and_use(keep)
    event(kind="kept", lports=[s.getsockname()[1] for s in kept])
    time.sleep(600)                 # idle until the test stops us


if __name__ == "__main__":
    main()
