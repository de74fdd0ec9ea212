"""Load-normalised profiles and compare's basis (collector/aggregate/compare.py): a test
environment at 1% of production's traffic fails on 100x the log writes per connection and
passes on the same per connection; a side without load is compared on absolute rates."""
import json

import pytest

from tests.support.cli import cli_runner
from collector.aggregate.compare import compare
from collector.aggregate.profile import ProfileBuilder, check_profile
from collector.cli import main
from collector.commands.compare import render_compare
from collector.commands.profile_file import write_profile
from collector.records import model

T0 = 1_700_000_000.0


def load_stream(n, services, host="h", tcp=True, resets=True):
    """Records of n 1-second intervals. services: {name: (conns/s, log writes per conn)}
    or {name: callable(i) -> (conns, writes)}; bytes: 100 per log write, 1 KiB of TCP
    output per conn, 1 reset received per 10 conns; conns: 3/4 accepted, 1/4 connected."""
    recs = []
    for i in range(n):
        ts = T0 + i + 1
        for name, spec in sorted(services.items()):
            conns, writes = spec(i) if callable(spec) else (spec[0], spec[0] * spec[1])
            rec = model.rate_record(host, ts, seq=i, interval=1.0, service=name, pids=[1],
                                    comms=["x"], log_writes=writes, log_bytes=writes * 100,
                                    paths=[])
            if conns is not None:
                rec.update(conns_accepted=conns - conns // 4, conns_connected=conns // 4)
                if tcp:
                    rec["tcp_bytes_out"] = conns * 1024
            if resets:
                rec.update(resets_sent=0, resets_received=(conns or 0) // 10)
            recs.append(rec)
        recs.append(model.stats_record(host, ts, seq=i, interval=1.0, drain_ms=1, keys=1,
                                       map_capacity=10, lost_events=0,
                                       unresolved_writes=0, cpu_s=0, rss_bytes=1))
    return recs


def profile(recs):
    b = ProfileBuilder()
    for r in recs:
        b.add(r)
    doc = b.profile("test")
    assert check_profile(doc, "t") is None
    return doc


PROD = {"app": (1000, 2)}                # 1,000 conns/s, 2 log writes each


def test_local_profile_ratios_are_ratios_of_sums():
    # 4 intervals: 10 writes over 0 conns, then 0 writes over 10 conns, twice: 20 / 20
    recs = load_stream(4, {"app": lambda i: (0, 10) if i % 2 == 0 else (10, 0)},
                       resets=False)
    doc = profile(recs)
    assert doc["version"] == 2
    assert doc["signals"] == ["log_writes_per_s", "log_bytes_per_s", "conns_per_s",
                              "tcp_bytes_out_per_s", "log_writes_per_conn",
                              "log_bytes_per_tcp_kib"]
    app = doc["services"]["app"]
    assert (app["conns"], app["tcp_bytes_out"]) == (20, 20 * 1024)
    assert app["conns_per_s"]["mean"] == 5.0 and app["conns_per_s"]["max"] == 10.0
    assert app["log_writes_per_conn"] == {"mean": 1.0, "sd": 0.0, "median": 1.0,
                                          "p10": 1.0, "p90": 1.0, "max": 1.0}
    assert app["log_bytes_per_tcp_kib"]["mean"] == 100.0      # 2,000 B over 20 KiB
    assert "resets_per_conn" not in app


def test_local_profile_resets_per_conn_and_services_without_load():
    recs = load_stream(10, {"web": (100, 1), "cron": lambda i: (None, 5)})
    doc = profile(recs)
    web, cron = doc["services"]["web"], doc["services"]["cron"]
    assert web["resets_per_conn"]["mean"] == 0.1             # 10 resets / 100 conns
    assert web["log_writes_per_conn"]["mean"] == 1.0
    # cron never carries load fields: no conns, no ratio (check_profile accepts it)
    assert cron["conns"] == 0 and cron["conns_per_s"]["mean"] == 0.0
    assert not {"log_writes_per_conn", "log_bytes_per_tcp_kib", "resets_per_conn"} & set(cron)


def test_one_percent_traffic_100x_per_request_fails_same_per_request_passes():
    prod = profile(load_stream(60, PROD))
    loud = profile(load_stream(60, {"app": (10, 200)}, host="test"))
    quiet = profile(load_stream(60, {"app": (10, 2)}, host="test"))
    r = compare(prod, loud)
    row = r["rows"][0]
    assert not r["ok"] and r["basis"] == "per_connection" and row["basis"] == "per_connection"
    assert row["basis_note"] is None
    assert list(row["signals"]) == ["log_writes_per_conn", "log_bytes_per_tcp_kib",
                                    "resets_per_conn", "conns_per_s"]
    w = row["signals"]["log_writes_per_conn"]
    assert (w["baseline"], w["current"], w["ratio"], w["exceeds"]) == (2.0, 200.0, 100.0, True)
    assert row["signals"]["log_bytes_per_tcp_kib"]["ratio"] == 100.0
    # the same absolute rate (2,000 writes/s): absolute basis passes it
    assert compare(prod, loud, basis="absolute")["ok"]
    assert compare(prod, loud, basis="absolute")["rows"][0]["basis_note"] == "--basis absolute"
    ok = compare(prod, quiet)
    assert ok["ok"] and ok["basis"] == "per_connection"
    conns = ok["rows"][0]["signals"]["conns_per_s"]
    assert (conns["baseline"], conns["current"], conns["exceeds"]) == (1000.0, 10.0, False)
    assert ok["rows"][0]["signals"]["resets_per_conn"]["ratio"] == 1.0


def test_min_rate_still_applies_to_a_ratio():
    # 10x per connection, but the current 1 write/s is under --min-rate 10
    prod = profile(load_stream(60, {"app": (1000, 0.01)}))
    test = profile(load_stream(60, {"app": (10, 0.1)}, host="test"))
    r = compare(prod, test)
    w = r["rows"][0]["signals"]["log_writes_per_conn"]
    assert r["ok"] and w["ratio"] == pytest.approx(10.0) and not w["exceeds"]
    assert not compare(prod, test, min_rate=0.5)["ok"]


def test_too_few_connections_fall_back_to_absolute_and_say_so():
    prod = profile(load_stream(60, PROD))
    few = profile(load_stream(60, {"app": lambda i: (1 if i < 90 else 0, 2000)}, host="t"))
    r = compare(prod, few)
    row = r["rows"][0]
    assert row["basis"] == "absolute" and r["basis"] == "per_connection"   # the run's
    assert row["basis_note"] == "60 connections in the current window, fewer than 100"
    assert list(row["signals"]) == ["log_writes_per_s", "log_bytes_per_s",
                                    "resets_sent_per_s", "resets_received_per_s"]
    assert r["ok"]                                   # 2,000 writes/s both sides
    assert compare(prod, few, min_conns=60)["rows"][0]["basis"] == "per_connection"
    assert not compare(prod, few, min_conns=60)["ok"]


def test_one_side_without_load_is_absolute_in_the_report():
    prod = profile(load_stream(60, PROD))
    noload = profile(_strip_load(load_stream(60, {"app": (10, 200)}, host="t")))
    assert noload["version"] == 1 and "conns_per_s" not in noload["signals"]
    r = compare(prod, noload)
    assert r["ok"] and r["basis"] == "absolute"
    assert r["rows"][0]["basis_note"] == "no load in the current profile"
    text = render_compare(r, "prod.json", "test.json").splitlines()
    assert text[0].startswith("baseline prod.json, current test.json: mean rate per second")
    assert "basis absolute (--basis auto); absolute (no load in the current profile): app" \
        in text
    with pytest.raises(ValueError, match="current profile has no load"):
        compare(prod, noload, basis="per_connection")


def _strip_load(recs):
    for r in recs:
        for k in ("conns_accepted", "conns_connected", "tcp_bytes_out"):
            r.pop(k, None)
    return recs


def test_mixed_bases_new_services_and_bytes_without_exact_count():
    prod = profile(load_stream(60, {"app": (1000, 2), "db": (500, 1)}, tcp=False))
    test = profile(load_stream(60, {"app": (10, 2), "db": (1, 1), "new": (50, 0.1)},
                               host="t", tcp=False))
    r = compare(prod, test)
    rows = {x["service"]: x for x in r["rows"]}
    assert r["basis"] == "per_connection" and r["ok"]
    assert rows["app"]["basis"] == "per_connection"
    # no tcp_bytes_out on either side: log bytes compared as a rate
    assert rows["app"]["signals"]["log_bytes_per_s"]["basis"] == "absolute"
    assert rows["db"]["basis_note"].startswith("60 connections")
    assert (rows["new"]["basis"], rows["new"]["basis_note"]) == ("absolute",
                                                                "in one profile only")
    text = render_compare(r, "p", "t")
    assert "per connection (at least 100 connections): app" in text
    assert "log writes/conn" in text and "conns/s" in text


@pytest.fixture
def files(tmp_path):
    out = {}
    for name, spec, strip in (("prod", PROD, False), ("loud", {"app": (10, 200)}, False),
                              ("same", {"app": (10, 2)}, False),
                              ("noload", {"app": (10, 2)}, True)):
        recs = load_stream(60, spec, host=name)
        doc = profile(_strip_load(recs) if strip else recs)
        out[name] = str(tmp_path / f"{name}.json")
        write_profile(doc, out[name])
    return out


def test_cli_exit_codes_basis_flag_and_json(files):
    run = cli_runner().invoke
    res = run(main, ["compare", files["prod"], files["loud"]])
    assert res.exit_code == 1, res.output
    assert "FAIL: 1 service over the limits: app" in res.output
    assert "basis per_connection (--basis auto)" in res.output
    assert run(main, ["compare", files["prod"], files["same"]]).exit_code == 0
    assert run(main, ["compare", files["prod"], files["loud"], "--basis", "absolute"]
               ).exit_code == 0
    assert run(main, ["compare", files["prod"], files["loud"], "--basis", "per-connection"]
               ).exit_code == 1
    assert run(main, ["compare", files["prod"], files["loud"], "--min-conns", "601"]
               ).exit_code == 0                                   # 600 conns: absolute
    res = run(main, ["compare", files["prod"], files["noload"], "--basis", "per-connection"])
    assert res.exit_code == 2
    assert res.output.strip() == ("surgewatch: error: --basis per-connection: the current "
                                  "profile has no load (connections): record it with the "
                                  "resets probe on")
    res = run(main, ["compare", files["prod"], files["loud"], "--json"])
    doc = json.loads(res.output)
    assert (doc["basis"], doc["basis_requested"], doc["min_conns"]) == \
        ("per_connection", "auto", 100)
    row = doc["rows"][0]
    assert (row["basis"], row["status"]) == ("per_connection", "matched")
    assert row["signals"]["log_writes_per_conn"]["ratio"] == 100.0
