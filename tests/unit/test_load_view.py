"""snapshot's TCP load section: LoadWindow over rate records, its text and JSON."""
from collector.aggregate.load import LoadWindow
from collector.views.load_view import load_json, render_load


def rate(service, writes, accepted=0, connected=0, tcp=None):
    r = {"service": service, "log_writes": writes, "log_bytes": writes * 10,
         "conns_accepted": accepted, "conns_connected": connected}
    if tcp is not None:
        r["tcp_bytes_out"] = tcp
    return r


def window():
    w = LoadWindow()
    w.add_interval([rate("web", 30, accepted=10, tcp=4096), rate("cron", 5),
                    rate("cli", 0, connected=2, tcp=10)], 1.0)
    w.add_interval([rate("web", 10, accepted=10, tcp=4096)], 1.0)
    w.add_interval([{"service": "old", "log_writes": 3}], 1.0)     # no load fields: not load
    return w


def test_rows_by_connections_with_writes_per_connection():
    assert render_load(window()).splitlines()[1:] == [
        "SERVICE                         CONNS   CONNS/S   TCP OUT/S  WRITES/CONN",
        "web                                20      6.67     2.7 KiB            2",
        "cli                                 2      0.67         3 B            0",
    ]


def test_json_and_no_bytes_column_without_a_byte_count():
    got = load_json(window())
    assert got[0] == {"service": "web", "conns_accepted": 20, "conns_connected": 0,
                      "conns_per_s": 20 / 3, "log_writes": 40, "tcp_bytes_out": 8192,
                      "tcp_bytes_out_per_s": 8192 / 3, "log_writes_per_conn": 2.0}
    w = LoadWindow()
    w.add_interval([rate("web", 4, accepted=2)], 2.0)
    assert "TCP OUT/S" not in render_load(w)
    assert load_json(w) == [{"service": "web", "conns_accepted": 2, "conns_connected": 0,
                             "conns_per_s": 1.0, "log_writes": 4, "log_writes_per_conn": 2.0}]
    assert render_load(LoadWindow()) == "TCP load: none"
