import io

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.errors import BadInput, StreamError
from collector.records.model import SCHEMA_VERSION, meta_record, rate_record, stats_record
from collector.records.stream import StreamWriter, encode, read_records


def _records():
    meta = meta_record("web1", 1700000000.5, 2.0, {"logwrites": {"enabled": True}},
                       "6.1.0-47-amd64", mode="snapshot", argv=["surgewatch", "snapshot"])
    rate = rate_record("web1", 1700000002.5, seq=0, interval=2.0, service="app.service",
                       pids=[102, 101], comms=["app", "app"], log_writes=10, log_bytes=1000,
                       paths=[{"path": "/var/log/app.log", "writes": 10, "bytes": 1000,
                               "pids": [101, 102]}])
    stats = stats_record("web1", 1700000002.5, seq=0, interval=2.0, drain_ms=0.8, keys=3,
                         map_capacity=10240, lost_events=0, unresolved_writes=1,
                         cpu_s=0.01, rss_bytes=40_000_000)
    return [meta, rate, stats]


def _read(data, path="s.msgpack"):
    return list(read_records(io.BytesIO(data), path))


def _read_until_error(data):
    got = []
    with pytest.raises(StreamError) as exc:
        for rec in read_records(io.BytesIO(data), "s.msgpack"):
            got.append(rec)
    return got, exc.value


def test_round_trip():
    recs = _records()
    buf = io.BytesIO()
    w = StreamWriter(buf)
    w.write_many(recs)
    w.flush()
    assert w.records == 3 and w.bytes == len(buf.getvalue())
    assert _read(buf.getvalue()) == recs


def test_record_builders():
    meta, rate, stats = _records()
    for rec in (meta, rate, stats):
        assert rec["v"] == SCHEMA_VERSION and isinstance(rec["ts"], float) and rec["host"] == "web1"
    assert [r["type"] for r in (meta, rate, stats)] == ["meta", "rate", "stats"]
    assert rate["pids"] == [101, 102] and rate["comms"] == ["app"]
    assert rate["log_writes_per_s"] == 5.0 and rate["log_bytes_per_s"] == 500.0
    assert "resets_sent" not in rate
    with pytest.raises(ValueError):
        rate_record("h", 0, seq=0, interval=0, service="s", pids=[], comms=[], log_writes=0,
                    log_bytes=0, paths=[])


def test_encode_escapes_undecodable_bytes_in_names():
    rec = dict(_records()[1], service="bad\udcffname")
    assert _read(encode(rec))[0]["service"] == "bad\\xffname"


def test_encode_refuses_non_records():
    with pytest.raises(TypeError):
        encode([1, 2])
    with pytest.raises(TypeError):
        encode({"type": "rate"})


def test_truncated_file_yields_whole_records_then_error_at_their_end():
    recs = _records()
    whole = encode(recs[0]) + encode(recs[1])
    data = whole + encode(recs[2])[:-3]
    got, err = _read_until_error(data)
    assert got == recs[:2]
    assert err.offset == len(whole)
    assert "truncated" in err.reason
    assert isinstance(err, BadInput)
    assert str(err).startswith(f"s.msgpack: offset {len(whole)}: ")


def test_truncated_inside_a_chunk_boundary_large_file():
    # Many records so the reader feeds several chunks; the cut is in the last record.
    rec = _records()[1]
    one = encode(rec)
    n = 70_000 // len(one) + 5
    data = one * n
    got, err = _read_until_error(data[:-1])
    assert len(got) == n - 1
    assert err.offset == len(one) * (n - 1)


def test_offsets_are_absolute_when_file_is_positioned():
    recs = _records()
    f = io.BytesIO(b"JUNK" + encode(recs[0]) + b"\xc1")
    f.seek(4)
    with pytest.raises(StreamError) as exc:
        list(read_records(f, "x"))
    assert exc.value.offset == 4 + len(encode(recs[0]))


def test_empty_stream_is_no_records():
    assert _read(b"") == []


def test_corrupt_byte_names_offset():
    recs = _records()
    first = encode(recs[0])
    got, err = _read_until_error(first + b"\xc1" + encode(recs[1]))
    assert got == [recs[0]]
    assert err.offset == len(first) and "corrupt" in err.reason


@pytest.mark.parametrize("obj, what", [
    ([1, 2], "record is an array, not a map"),
    (5, "record is an integer, not a map"),
    (b"x", "record is binary data, not a map"),
    ({"type": "rate", "ts": 1.0}, "'v'"),
    ({"v": "1.0", "ts": 1.0}, "'type'"),
    ({"v": 1, "type": "rate"}, "version"),
    ({"v": "one", "type": "rate"}, "malformed"),
])
def test_bad_records_refused(obj, what):
    got, err = _read_until_error(msgpack.packb(obj))
    assert got == [] and err.offset == 0 and what in err.reason


def test_newer_major_refused_with_upgrade_message():
    first = encode(_records()[0])
    newer = msgpack.packb({"v": "2.0", "type": "rate", "ts": 1.0, "host": "h"})
    got, err = _read_until_error(first + newer)
    assert len(got) == 1
    assert err.offset == len(first)
    assert err.reason == "written by a newer surgewatch (schema 2.0); upgrade to read it"


def test_newer_minor_accepted_and_unknown_fields_kept():
    rec = dict(_records()[1], v="1.7", brand_new_field={"x": 1})
    other = {"v": "1.9", "type": "brand_new_type", "ts": 1.0, "host": "h"}
    assert _read(msgpack.packb(rec) + msgpack.packb(other)) == [rec, other]


def test_huge_length_header_does_not_allocate_or_hang():
    # bin32 claiming 4 GiB followed by little data: a truncation error, promptly.
    got, err = _read_until_error(b"\xc6\xff\xff\xff\xff" + b"\0" * 100)
    assert got == [] and err.offset == 0


def test_oversized_record_refused():
    big = encode({"v": "1.0", "type": "rate", "blob": b"\0" * 5000})
    with pytest.raises(StreamError) as exc:
        list(read_records(io.BytesIO(big), "x", max_record_bytes=1000))
    assert "larger than 1000 bytes" in exc.value.reason


def test_text_stream_buffer_is_used():
    raw = io.BytesIO()
    text = io.TextIOWrapper(raw, encoding="utf-8")
    w = StreamWriter(text)
    w.write(_records()[0])
    w.flush()
    assert _read(raw.getvalue()) == [_records()[0]]


@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_raise_stream_error_or_decode(data):
    try:
        for rec in read_records(io.BytesIO(data), "fuzz"):
            assert isinstance(rec, dict) and "v" in rec and "type" in rec
    except StreamError as e:
        assert 0 <= e.offset <= len(data)


@settings(max_examples=100, deadline=1000)
@given(st.binary(max_size=512), st.integers(min_value=0, max_value=200))
def test_valid_prefix_then_garbage(garbage, cut):
    good = b"".join(encode(r) for r in _records())
    data = good[:cut] + garbage
    try:
        n = sum(1 for _ in read_records(io.BytesIO(data), "fuzz"))
    except StreamError as e:
        assert 0 <= e.offset <= len(data)
    else:
        assert n >= 0


def test_encode_reuses_one_packer_and_recovers_after_a_bad_name():
    import io

    from collector.records.stream import encode, read_records

    bad = {"v": "1.3", "type": "rate", "service": "x\udcff"}
    good = {"v": "1.3", "type": "stats", "seq": 1}
    data = encode(good) + encode(bad) + encode(good)
    recs = list(read_records(io.BytesIO(data), "t"))
    assert recs == [good, {"v": "1.3", "type": "rate", "service": "x\\xff"}, good]
