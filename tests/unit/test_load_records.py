"""collector/aggregate/load.py: per-process load to per-service load, into rate records."""
from collector.aggregate.load import (AttributedLoad, ServiceLoad, add_load, add_ratios,
                                      aggregate_load)
from collector.aggregate.resets import ServiceResets, add_resets


def rec(service, writes):
    return {"service": service, "log_writes": writes, "log_bytes": writes * 10}


def new_record(name, _agg):
    return rec(name, 0)


def test_processes_sum_per_service_and_idle_ones_are_dropped():
    got = aggregate_load([AttributedLoad("web", 1, "nginx", 5, 0, 100),
                          AttributedLoad("web", 2, "nginx", 3, 1, 50),
                          AttributedLoad("cron", 3, "cron", 0, 0, 0)])
    assert list(got) == ["web"]
    w = got["web"]
    assert (w.accepted, w.connected, w.tcp_bytes, w.pids) == (8, 1, 150, {1, 2})


def test_load_only_service_gets_a_record_with_reset_fields_and_ratios():
    rates = [rec("app", 40)]
    load = {"app": ServiceLoad("app", accepted=20, tcp_bytes=2048),
            "db": ServiceLoad("db", accepted=7)}
    resets = {"app": ServiceResets("app")}
    resets["app"].sent = 2
    add_load(rates, load, new_record)
    add_resets(rates, resets, new_record)
    add_ratios(rates)
    by = {r["service"]: r for r in rates}
    assert set(by) == {"app", "db"}
    assert all("resets_sent" in r and "resets_received" in r for r in rates)
    assert by["app"]["log_writes_per_conn"] == 2.0
    assert by["app"]["log_bytes_per_tcp_kib"] == 200.0
    assert by["app"]["resets_per_conn"] == 0.1
    assert (by["db"]["conns_accepted"], by["db"]["log_writes_per_conn"]) == (7, 0.0)
    assert "log_bytes_per_tcp_kib" not in by["db"]          # no bytes: no byte ratio


def test_without_a_byte_count_no_tcp_bytes_field():
    rates = add_load([rec("app", 1)], {"app": ServiceLoad("app", accepted=1)}, new_record,
                     tcp_bytes=False)
    assert "tcp_bytes_out" not in rates[0] and rates[0]["conns_accepted"] == 1
