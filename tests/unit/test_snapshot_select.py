"""snapshot -s/--service and -p/--pid: what one interval keeps, exactly."""
from collector.aggregate.logrates import aggregate_interval
from collector.aggregate.resets import ServiceResets
from collector.aggregate.selection import Selection
from collector.records.model import LogWrite

WRITES = [LogWrite(10, "app", "app.service", "/var/log/app.log", 30, 3000),
          LogWrite(11, "app", "app.service", "/var/log/app.log", 5, 500),
          LogWrite(11, "app", "app.service", "/var/log/err.log", 2, 20),
          LogWrite(20, "nginx", "nginx.service", "/var/log/nginx/a.log", 7, 70)]


def interval():
    rates = aggregate_interval(WRITES, 3, 2.0)
    for r in rates:
        r["resets_sent"], r["resets_received"] = 0, 0
    rates.append({"seq": 3, "interval": 2.0, "service": "client", "pids": [30], "comms": ["c"],
                  "log_writes": 0, "log_bytes": 0, "paths": [], "resets_sent": 0,
                  "resets_received": 4})
    resets = {"client": ServiceResets("client", pids={30}, received=4),
              "app.service": ServiceResets("app.service", pids={11}, sent=1)}
    resets["app.service"].sent = 1
    for r in rates:
        if r["service"] == "app.service":
            r["resets_sent"] = 1
    records = [{"type": "reset", "service": "client"}, {"type": "reset", "service": "app.service"}]
    events = [("client", "ev1"), ("app.service", "ev2")]
    return rates, resets, records, events


def test_nothing_selected_keeps_everything():
    rates, resets, records, events = interval()
    sel = Selection().select(rates, resets, records, events)
    assert (sel.rates, sel.resets, sel.reset_records, sel.reset_events) == (rates, resets,
                                                                            records, events)


def test_service_globs_repeatable():
    rates, resets, records, events = interval()
    sel = Selection(services=("nginx*", "cli?nt")).select(rates, resets, records, events)
    assert [r["service"] for r in sel.rates] == ["nginx.service", "client"]
    assert list(sel.resets) == ["client"]
    assert sel.reset_records == [{"type": "reset", "service": "client"}]
    assert sel.reset_events == [("client", "ev1")]
    assert Selection(services=("nginx",)).select(rates, resets).rates == []   # whole name


def test_pid_keeps_its_own_writes_exactly_and_its_services_resets():
    rates, resets, records, events = interval()
    sel = Selection(pids=(11,)).select(rates, resets, records, events, writes=WRITES, seq=3,
                                       interval_s=2.0)
    (app,) = sel.rates
    assert (app["service"], app["pids"], app["log_writes"], app["log_bytes"]) == (
        "app.service", [11], 7, 520)
    assert [(p["path"], p["writes"]) for p in app["paths"]] == [("/var/log/app.log", 5),
                                                                ("/var/log/err.log", 2)]
    assert (app["resets_sent"], app["resets_received"], app["log_writes_per_s"]) == (1, 0, 3.5)
    assert list(sel.resets) == ["app.service"]
    assert sel.reset_events == [("app.service", "ev2")]


def test_pid_of_a_reset_only_service_and_both_filters():
    rates, resets, records, events = interval()
    sel = Selection(pids=(30, 20)).select(rates, resets, records, events, writes=WRITES,
                                          seq=3, interval_s=2.0)
    assert [(r["service"], r["log_writes"], r["resets_received"], r["pids"])
            for r in sel.rates] == [("nginx.service", 7, 0, [20]), ("client", 0, 4, [30])]
    both = Selection(services=("client",), pids=(30, 20)).select(
        rates, resets, records, events, writes=WRITES, seq=3, interval_s=2.0)
    assert [r["service"] for r in both.rates] == ["client"]


def test_inventory_kept_by_service_and_pid():
    inv = {"app.service": [{"pid": 10, "at_risk": True}, {"pid": 11, "at_risk": False}],
           "nginx.service": [{"pid": 20, "at_risk": False}]}
    assert Selection().inventory(inv) is inv and Selection(("x",)).inventory(None) is None
    assert Selection(services=("nginx*",)).inventory(inv) == {
        "nginx.service": [{"pid": 20, "at_risk": False}]}
    assert Selection(pids=(11,)).inventory(inv) == {
        "app.service": [{"pid": 11, "at_risk": False}]}
    assert Selection(services=("nginx*",), pids=(11,)).inventory(inv) == {}
