"""Load ratios of one rate record (collector/aggregate/signals.py, schema 1.5)."""
from collector.aggregate.signals import conns_of, load_ratios, ratios_of


def rec(**kw):
    base = {"type": "rate", "service": "web", "interval": 1.0, "log_writes": 300,
            "log_bytes": 30720}
    base.update(kw)
    return base


def test_all_three_ratios():
    r = rec(conns_accepted=100, conns_connected=50, tcp_bytes_out=10240, resets_sent=3,
            resets_received=12)
    assert load_ratios(r) == {"log_writes_per_conn": 2.0, "log_bytes_per_tcp_kib": 3072.0,
                              "resets_per_conn": 0.1}
    assert "log_writes_per_conn" not in r          # the record is not changed


def test_no_load_fields_no_ratios():
    assert load_ratios(rec()) == {}
    assert load_ratios(rec(resets_sent=5, resets_received=0)) == {}


def test_zero_denominators_leave_ratios_out():
    assert load_ratios(rec(conns_accepted=0, conns_connected=0, tcp_bytes_out=0)) == {}


def test_without_bytes_or_resets():
    # tcp_bytes_out absent (no exact count in this kernel); no reset fields
    assert load_ratios(rec(conns_accepted=0, conns_connected=4)) == {"log_writes_per_conn": 75.0}


def test_load_only_service():
    r = rec(log_writes=0, log_bytes=0, conns_accepted=8, conns_connected=0, tcp_bytes_out=2048,
            resets_sent=0, resets_received=2)
    assert load_ratios(r) == {"log_writes_per_conn": 0.0, "log_bytes_per_tcp_kib": 0.0,
                              "resets_per_conn": 0.25}


def test_conns_of_and_ratio_of_sums():
    assert conns_of(rec()) is None
    assert conns_of(rec(conns_accepted=3)) == 3
    # a window's sums: 10 writes over 0 conns + 0 writes over 10 conns -> 1 per conn
    assert ratios_of(10, None, 10, None, None) == {"log_writes_per_conn": 1.0}
