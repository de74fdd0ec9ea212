"""Map pressure on the resets probe (docs/reliability.md): more live sockets than the
owner map (an LRU hash) holds. Evicted owners make resets "owner unknown", counted in
`no_owner` (stats `resets_owner_unknown`); the reset counts themselves stay exact."""
import os
import socket
import struct
import time

import pytest

from tests.privileged.relhelp import record_figure

pytestmark = pytest.mark.privileged
MAX_OWNERS = 16
CONNS = 64


def test_tiny_owner_map_resets_exact_unknown_owners_counted():
    from collector.probes.resets import ResetProbe

    probe = ResetProbe(max_owners=MAX_OWNERS).load()
    try:
        probe.drain()
        probe.health()
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(CONNS)
        pairs = []
        for _ in range(CONNS):
            c = socket.create_connection(srv.getsockname())
            s, _ = srv.accept()
            pairs.append((c, s))
        ports = {c.getsockname()[1] for c, _ in pairs}
        server_port = srv.getsockname()[1]
        for c, s in pairs:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()                                   # abort: one RST sent, one received
        time.sleep(0.2)
        counts = probe.drain().counts
        health = probe.health()
        for _, s in pairs:
            s.close()
        srv.close()
    finally:
        probe.close()
    me = os.getpid()
    sent_mine = sum(c.count for c in counts if c.direction == "sent" and c.tgid == me)
    sent_unknown = sum(c.count for c in counts if c.direction == "sent" and c.tgid == 0
                       and c.lport in ports)
    recv_mine = sum(c.count for c in counts if c.direction == "received" and c.tgid == me)
    recv_unknown = sum(c.count for c in counts if c.direction == "received" and c.tgid == 0
                       and c.lport == server_port)
    record_figure("reset_owner_pressure", max_owners=MAX_OWNERS, connections=CONNS,
                  sent_attributed=sent_mine, sent_owner_unknown=sent_unknown,
                  received_attributed=recv_mine, received_owner_unknown=recv_unknown,
                  no_owner=health["no_owner"], owners_full=health["owners_full"],
                  counts_full=health["counts_full"])
    assert sent_mine + sent_unknown == CONNS          # every reset counted, none twice
    assert sent_unknown > 0                           # the map was too small ...
    assert recv_mine + recv_unknown == CONNS
    assert health["no_owner"] >= sent_unknown + recv_unknown   # ... and that is reported
    assert health["counts_full"] == 0
