"""Profiles, `surgewatch record --from` and `surgewatch compare` (exit codes 0, 1, 2)."""
import json
import math
import random

import pytest

from tests.support.cli import cli_runner
from collector.records import model
from collector.aggregate.profile import (
    PROFILE_FORMAT,
    PROFILE_VERSION,
    ProfileBuilder,
    RateHistogram,
    check_profile,
)
from collector.aggregate.compare import compare
from collector.cli import main
from collector.commands.compare import render_compare
from collector.commands.profile_file import read_profile, write_profile
from collector.commands.record import record_from
from collector.errors import BadInput
from collector.records.stream import encode

T0 = 1_700_000_000.0


def interval_records(seq, ts, services, interval=1.0, host="h", resets=False):
    out = []
    for name, (writes, nbytes) in sorted(services.items()):
        rec = model.rate_record(host, ts, seq=seq, interval=interval, service=name, pids=[1],
                                comms=["x"], log_writes=writes, log_bytes=nbytes,
                                paths=[{"path": f"/var/log/{name}.log", "writes": writes,
                                        "bytes": nbytes, "pids": [1]}])
        if resets:
            rec["resets_sent"], rec["resets_received"] = writes // 10, 0
        out.append(rec)
    out.append(model.stats_record(host, ts, seq=seq, interval=interval, drain_ms=1, keys=1,
                                  map_capacity=10, lost_events=0,
                                  unresolved_writes=0, cpu_s=0, rss_bytes=1))
    return out


def stream(n, rates, host="h", start=T0, resets=False, rnd=None):
    """Records of n 1-second intervals; rates: {service: writes/s} (bytes = 100 x)."""
    recs = [model.meta_record(host, start, 1.0, {"logwrites": {"enabled": True}}, "6.1",
                              mode="run", version="t")]
    for i in range(n):
        svc = {}
        for name, r in rates.items():
            v = r(i) if callable(r) else r
            if rnd is not None:
                v = v * rnd.uniform(0.7, 1.3)
            if v:
                svc[name] = (int(v), int(v) * 100)
        recs += interval_records(i, start + i + 1, svc, host=host, resets=resets)
    return recs


def write_stream(path, recs):
    path.write_bytes(b"".join(encode(r) for r in recs))
    return path


def profile_of(recs, source="test"):
    b = ProfileBuilder()
    for r in recs:
        b.add(r)
    return b.profile(source)


# -- histogram, builder -------------------------------------------------------------------
def test_histogram_quantiles_within_resolution_and_exact_moments():
    rnd = random.Random(1)
    xs = [rnd.lognormvariate(3, 1) for _ in range(5000)] + [0.0] * 500
    h = RateHistogram()
    for x in xs:
        h.add(x)
    xs.sort()
    for q in (0.1, 0.5, 0.9):
        exact = xs[int(q * (len(xs) - 1))]
        assert h.quantile(q) == pytest.approx(exact, rel=0.05)
    assert h.quantile(0.05) == 0.0 and h.max == xs[-1]
    mean = sum(xs) / len(xs)
    assert h.sd() == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs)))
    assert RateHistogram().quantile(0.5) == 0.0
    with pytest.raises(ValueError):
        h.add(-1)


def test_profile_exact_means_and_zero_intervals():
    # a: 10 lines/s throughout; b: 50 lines/s in the second half only
    recs = stream(10, {"a": 10, "b": lambda i: 50 if i >= 5 else 0})
    p = profile_of(recs)
    assert p["format"] == PROFILE_FORMAT and p["version"] == 1    # no load: readable before version 2
    assert p["duration_s"] == 10.0 and p["intervals"] == 10 and p["hosts"] == ["h"]
    assert p["started"] == T0 and p["ended"] == T0 + 10
    assert p["signals"] == ["log_writes_per_s", "log_bytes_per_s"]     # no resets carried
    a, b = p["services"]["a"], p["services"]["b"]
    assert a["log_writes_per_s"]["mean"] == 10.0 and a["log_bytes_per_s"]["mean"] == 1000.0
    assert a["active_intervals"] == 10 and a["log_writes_per_s"]["sd"] == 0.0
    assert b["log_writes_per_s"]["mean"] == 25.0 and b["active_intervals"] == 5
    assert b["log_writes_per_s"]["p10"] == 0.0
    assert b["log_writes_per_s"]["p90"] == 50.0 and a["log_writes_per_s"]["median"] == 10.0
    assert b["log_writes_per_s"]["max"] == 50.0
    assert a["paths"] == [{"path": "/var/log/a.log", "writes_per_s": 10.0,
                           "bytes_per_s": 1000.0}]
    assert check_profile(p, "x") is None


def test_profile_keeps_resets_when_the_stream_has_them():
    p = profile_of(stream(4, {"a": 100}, resets=True))
    assert p["signals"][2:] == ["resets_sent_per_s", "resets_received_per_s"]
    assert p["services"]["a"]["resets_sent_per_s"]["mean"] == 10.0


def test_profile_drops_rates_without_their_stats_and_needs_an_interval():
    recs = stream(3, {"a": 10})
    recs.insert(-1, recs[0])           # a meta (restart) right before the last stats
    p = profile_of(recs)
    assert p["intervals"] == 3 and p["services"]["a"]["log_writes_per_s"]["mean"] == 20 / 3
    with pytest.raises(ValueError):
        profile_of(recs[:1])


def test_profile_memory_bounded_paths_and_services():
    b = ProfileBuilder(max_services=2)
    for i in range(3):
        for r in interval_records(i, T0 + i, {f"s{j}": (1, 1) for j in range(5)}):
            b.add(r)
    p = b.profile("x")
    assert len(p["services"]) == 2 and p["services_not_kept"] == 3 * 3


# -- checking profiles ------------------------------------------------------------------------
@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.update(format="other"), "not a surgewatch profile"),
    (lambda d: d.update(version=PROFILE_VERSION + 1), "newer than this surgewatch reads"),
    (lambda d: d.update(version="1"), "malformed profile version"),
    (lambda d: d.update(signals=["nope"]), "malformed profile (signals/services)"),
    (lambda d: d["services"]["a"]["log_writes_per_s"].update(mean=-1), "signal log_writes"),
    (lambda d: d["services"].update(a=[]), "service 'a'"),
])
def test_check_profile_names_the_problem(mutate, words):
    p = profile_of(stream(3, {"a": 10}))
    mutate(p)
    assert words in check_profile(p, "P")
    assert check_profile([], "P").startswith("P: not a surgewatch profile")


# -- compare -------------------------------------------------------------------------------
def test_compare_ratio_floor_new_and_vanished():
    base = profile_of(stream(60, {"app": 10, "quiet": 1, "gone": 30, "steady": 500}))
    cur = profile_of(stream(60, {"app": 5000, "quiet": 8, "new-loud": 200, "new-quiet": 5,
                                 "steady": 600}, host="test-env"))
    r = compare(base, cur)
    rows = {x["service"]: x for x in r["rows"]}
    assert not r["ok"]
    assert rows["app"]["exceeds"] and rows["app"]["signals"]["log_writes_per_s"]["ratio"] == 500
    assert not rows["quiet"]["exceeds"]             # 8x but below --min-rate
    assert rows["new-loud"]["status"] == "new" and rows["new-loud"]["exceeds"]
    assert math.isinf(rows["new-loud"]["signals"]["log_writes_per_s"]["ratio"])
    assert rows["new-quiet"]["status"] == "new" and not rows["new-quiet"]["exceeds"]
    assert rows["gone"]["status"] == "gone" and not rows["gone"]["exceeds"]
    assert not rows["steady"]["exceeds"]
    assert list(rows) == sorted(rows)
    ok = compare(base, cur, max_ratio=1000, min_rate=300, min_bytes_rate=1e9)
    assert ok["ok"]
    with pytest.raises(ValueError):
        compare(base, cur, stat="p99")


def test_compare_noisy_same_load_across_hosts_passes():
    rnd = random.Random(5)
    rates = {f"svc{i}": 20 * (i + 1) for i in range(8)}
    base = profile_of(stream(300, rates, host="prod", rnd=rnd))
    cur = profile_of(stream(300, rates, host="test", rnd=rnd))
    for stat in ("mean", "median", "p90", "max"):
        assert compare(base, cur, stat=stat)["ok"], stat


def test_compare_signals_only_one_side_has_are_not_compared():
    base = profile_of(stream(5, {"a": 10}, resets=True))
    cur = profile_of(stream(5, {"a": 10}))
    r = compare(base, cur)
    assert r["signals"] == ["log_writes_per_s", "log_bytes_per_s"]
    assert r["signals_not_compared"] == ["resets_sent_per_s", "resets_received_per_s"]
    assert "not compared" in render_compare(r, "b", "c")


def test_render_compare_table():
    base = profile_of(stream(10, {"app.service": 10}))
    cur = profile_of(stream(10, {"app.service": 5000, "new.service": 20}))
    text = render_compare(compare(base, cur), "prod.json", "test.json")
    lines = text.splitlines()
    assert lines[0].startswith("baseline prod.json, current test.json: mean rate")
    assert lines[1].split() == ["SERVICE", "SIGNAL", "BASELINE", "CURRENT", "RATIO"]
    assert "app.service" in lines[2] and "10.0" in lines[2] and "5.0k" in lines[2] \
        and "500.00x" in lines[2] and "EXCEEDS" in lines[2]
    assert any("new.service (new)" in ln and " new " in ln + " " for ln in lines)
    assert lines[-1] == "FAIL: 2 services over the limits: app.service, new.service"


# -- files and the command line ------------------------------------------------------------------
def test_record_from_file_and_segments_with_duration(tmp_path):
    recs = stream(20, {"a": lambda i: 10 if i < 10 else 40})
    f = write_stream(tmp_path / "s.msgpack", recs)
    whole = record_from(str(f))
    assert whole["services"]["a"]["log_writes_per_s"]["mean"] == 25.0
    last5 = record_from(str(f), duration=5)
    assert last5["intervals"] == 5 and last5["services"]["a"]["log_writes_per_s"]["mean"] == 40
    since = record_from(str(f), since=T0 + 15)
    assert since["intervals"] == 5
    seg = tmp_path / "seg"
    seg.mkdir()
    write_stream(seg / "seg-0000000001.msgpack", recs[:21])      # meta + 10 intervals
    write_stream(seg / "seg-0000000002.msgpack", [recs[0]] + recs[21:])
    assert record_from(str(seg))["services"] == whole["services"]


def test_record_from_cut_file_notes_and_keeps_whole_records(tmp_path):
    data = b"".join(encode(r) for r in stream(5, {"a": 10}))
    f = tmp_path / "cut.msgpack"
    f.write_bytes(data[:-3])
    notes = []
    p = record_from(str(f), on_note=notes.append)
    assert p["intervals"] == 4 and notes and "truncated" in notes[0]


@pytest.mark.parametrize("content", [b"\xc1\xc1\xc1", b""])
def test_record_from_bad_source_is_bad_input(tmp_path, content):
    f = tmp_path / "bad.msgpack"
    f.write_bytes(content)
    with pytest.raises(BadInput):
        record_from(str(f))
    with pytest.raises(BadInput, match="no such file"):
        record_from(str(tmp_path / "missing"))



def test_record_from_nothing_to_profile_says_what_the_source_holds(tmp_path):
    empty_dir = tmp_path / "segs"
    empty_dir.mkdir()
    with pytest.raises(BadInput, match=r"segs: no segment files \(seg-\*.msgpack\) in this "
                                       r"directory; give the directory `surgewatch run` writes"):
        record_from(str(empty_dir))
    empty = write_stream(tmp_path / "e.msgpack", [])
    with pytest.raises(BadInput, match=r"e.msgpack: no records in it \(empty\); nothing to "
                                       r"profile yet$"):
        record_from(str(empty))
    meta_only = write_stream(tmp_path / "m.msgpack", stream(0, {}))
    with pytest.raises(BadInput, match=r"m.msgpack: 1 record but no complete interval yet"):
        record_from(str(meta_only))
    later = write_stream(tmp_path / "s.msgpack", stream(3, {"a": 10}))
    with pytest.raises(BadInput, match=r"s.msgpack: no complete interval after the cutoff; "
                                       r"give an earlier --since or a longer --duration$"):
        record_from(str(later), since=T0 + 10)


def test_profile_file_roundtrip_and_read_errors(tmp_path):
    p = profile_of(stream(3, {"a": 10}))
    path = tmp_path / "p.json"
    write_profile(p, str(path))
    assert read_profile(str(path)) == p
    (tmp_path / "bad.json").write_text('{"format": ')
    with pytest.raises(BadInput, match="corrupt profile: invalid JSON at line 1"):
        read_profile(str(tmp_path / "bad.json"))
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe")
    with pytest.raises(BadInput, match="not UTF-8"):
        read_profile(str(tmp_path / "bin.json"))
    with pytest.raises(BadInput, match="cannot read"):
        read_profile(str(tmp_path / "nope.json"))
    with pytest.raises(BadInput, match="cannot write"):
        write_profile(p, str(tmp_path / "no-dir" / "p.json"))


@pytest.fixture
def profiles(tmp_path):
    base = write_stream(tmp_path / "prod.msgpack", stream(60, {"app": 10, "db": 100}))
    same = write_stream(tmp_path / "same.msgpack",
                        stream(60, {"app": 10, "db": 100}, rnd=random.Random(2), host="t"))
    flood = write_stream(tmp_path / "flood.msgpack", stream(60, {"app": 5000, "db": 100}))
    runner = cli_runner()
    out = {}
    for name, src in (("base", base), ("same", same), ("flood", flood)):
        dest = tmp_path / f"{name}.json"
        res = runner.invoke(main, ["record", "--from", str(src), "-o", str(dest)])
        assert res.exit_code == 0, res.output
        out[name] = str(dest)
    return out


def test_cli_compare_exit_0_within_limits(profiles):
    res = cli_runner().invoke(main, ["compare", profiles["base"], profiles["same"]])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1] == "ok: every service within the limits"


def test_cli_compare_exit_1_over_limits_and_json(profiles):
    res = cli_runner().invoke(main, ["compare", profiles["base"], profiles["flood"]])
    assert res.exit_code == 1
    assert "FAIL: 1 service over the limits: app" in res.output
    res = cli_runner().invoke(main, ["compare", profiles["base"], profiles["flood"], "--json"])
    assert res.exit_code == 1
    doc = json.loads(res.output)
    assert doc["ok"] is False and doc["baseline"] == profiles["base"]
    app = next(r for r in doc["rows"] if r["service"] == "app")
    assert app["signals"]["log_writes_per_s"]["ratio"] == 500.0
    res = cli_runner().invoke(main, ["compare", profiles["base"], profiles["flood"],
                                    "--max-ratio", "1000", "--min-bytes-rate", "1e9"])
    assert res.exit_code == 0, res.output


def test_cli_compare_exit_2_on_bad_input(profiles, tmp_path):
    (tmp_path / "corrupt.json").write_text("{not json")
    for bad in (str(tmp_path / "corrupt.json"), str(tmp_path / "missing.json")):
        res = cli_runner().invoke(main, ["compare", profiles["base"], bad])
        assert res.exit_code == 2
        err = res.output.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("surgewatch: error: ")
    res = cli_runner().invoke(main, ["compare", profiles["base"]])
    assert res.exit_code == 2


def test_cli_record_usage_errors(tmp_path):
    res = cli_runner().invoke(main, ["record", "-o", str(tmp_path / "p.json"), "--since", "1h"])
    assert res.exit_code == 2
    res = cli_runner().invoke(main, ["record", "--from", str(tmp_path / "nope"), "-o", "x"])
    assert res.exit_code == 2 and "no such file" in res.output


def test_cli_compare_json_status_names_matched_new_and_gone(profiles, tmp_path):
    src = write_stream(tmp_path / "moved.msgpack", stream(60, {"app": 10, "cache": 50}))
    moved = str(tmp_path / "moved.json")
    assert cli_runner().invoke(main, ["record", "--from", str(src), "-o", moved]).exit_code == 0
    res = cli_runner().invoke(main, ["compare", profiles["base"], moved, "--json"])
    assert res.exit_code == 1                      # cache: new and above the minimum
    rows = {r["service"]: r for r in json.loads(res.output)["rows"]}
    assert {n: r["status"] for n, r in rows.items()} == \
        {"app": "matched", "cache": "new", "db": "gone"}
    cache = rows["cache"]["signals"]["log_writes_per_s"]
    assert cache["baseline"] == 0.0 and cache["ratio"] is None and cache["exceeds"]
    assert rows["db"]["signals"]["log_writes_per_s"]["current"] == 0.0


def test_compare_only_the_services_matching_the_globs():
    base = profile_of(stream(60, {"app": 10, "db": 100, "batch": 10}))
    cur = profile_of(stream(60, {"app": 10, "db": 5000, "cache": 5000}))
    r = compare(base, cur, services=("app*",))
    assert [row["service"] for row in r["rows"]] == ["app"] and r["ok"]
    assert r["services"] == ["app*"] and r["services_unmatched"] == []
    r = compare(base, cur, services=("app", "d?"))
    assert [row["service"] for row in r["rows"]] == ["app", "db"] and not r["ok"]
    r = compare(base, cur, services=("cache", "batch", "nope*"))     # new, gone, a typo
    assert {row["service"]: row["status"] for row in r["rows"]} == {"batch": "gone",
                                                                  "cache": "new"}
    assert r["services_unmatched"] == ["nope*"]
    assert compare(base, cur)["services"] == []                       # every service


def test_cli_compare_service_gates_one_service_on_a_shared_host(profiles):
    run = cli_runner().invoke
    res = run(main, ["compare", profiles["base"], profiles["flood"], "--service", "db*"])
    assert res.exit_code == 0, res.output
    out = res.output.splitlines()
    assert "only services matching --service db*" in out[0]
    assert out[2].startswith("db ") and not any(line.startswith("app") for line in out)
    assert out[-1] == "ok: every service within the limits"
    res = run(main, ["compare", profiles["base"], profiles["flood"], "-s", "db", "-s", "app",
                     "--json"])
    assert res.exit_code == 1
    doc = json.loads(res.output)
    assert doc["services"] == ["db", "app"] and {r["service"] for r in doc["rows"]} == \
        {"app", "db"}


def test_cli_compare_service_matching_nothing_is_bad_input(profiles):
    """A gate whose glob has a typo must not pass on an empty comparison."""
    res = cli_runner().invoke(main, ["compare", profiles["base"], profiles["flood"],
                                    "--service", "db", "--service", "ap"])
    assert res.exit_code == 2
    assert res.stderr.splitlines() == [
        "surgewatch: error: --service ap: no service of either profile matches it (a glob "
        "on the whole name); their services: app, db"]
