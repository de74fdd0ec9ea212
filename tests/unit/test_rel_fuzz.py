"""Fuzzing (docs/reliability.md): the stream decoder and the config loader with hypothesis.

Bounded in `make test` (SURGEWATCH_FUZZ_EXAMPLES, default 200 per target); `make fuzz`
runs the same targets with 20,000 examples each. Properties:
- stream: mutated valid streams (bit flips, cuts, insertions, duplicated spans) and
  records of any shape either decode into dicts with `v` and `type`, or raise StreamError
  naming the file and an offset inside it; never another exception, never a hang;
- config: any TOML document built from the real keys with values of any type, and any
  text, either loads or raises BadInput with one line `FILE: ...` (exit code 2).
"""
import io
import os
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import config
from collector.errors import EXIT_USAGE, BadInput, StreamError
from collector.records.stream import encode, read_records
from tests.unit.test_stream import _records

N = int(os.environ.get("SURGEWATCH_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=N, deadline=None, derandomize=not os.environ.get("SURGEWATCH_FUZZ_RANDOM"),
                suppress_health_check=list(HealthCheck))

GOOD = b"".join(encode(r) for r in _records() * 3)


def _decode(data):
    t0 = time.monotonic()
    n = 0
    try:
        for rec in read_records(io.BytesIO(data), "fuzz.msgpack"):
            assert isinstance(rec, dict) and "v" in rec and isinstance(rec["type"], str)
            n += 1
    except StreamError as e:
        assert 0 <= e.offset <= len(data)
        assert str(e).startswith(f"fuzz.msgpack: offset {e.offset}: ")
        assert "\n" not in str(e)
    assert time.monotonic() - t0 < 2.0
    return n


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(GOOD) - 1), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, len(GOOD)), st.integers(0, 64)),
    st.tuples(st.just("insert"), st.integers(0, len(GOOD)), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("dup"), st.integers(0, len(GOOD)), st.integers(1, 64)),
    st.tuples(st.just("set"), st.integers(0, len(GOOD) - 1), st.integers(0, 255)),
)


def _mutate(data, muts):
    b = bytearray(data)
    for m in muts:
        if not b:
            break
        kind, pos, arg = m
        pos = min(pos, len(b) - 1) if kind in ("flip", "set") else min(pos, len(b))
        if kind == "flip":
            b[pos] ^= 1 << arg
        elif kind == "set":
            b[pos] = arg
        elif kind == "cut":
            del b[pos:pos + arg]
        elif kind == "insert":
            b[pos:pos] = arg
        elif kind == "dup":
            b[pos:pos] = b[pos:pos + arg]
    return bytes(b)


@FUZZ
@given(st.lists(mutation, min_size=1, max_size=6))
def test_fuzz_stream_mutations(muts):
    _decode(_mutate(GOOD, muts))


msg_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() |
    st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=8) | st.integers(), inner, max_size=4),
    max_leaves=12)


@FUZZ
@given(st.lists(st.dictionaries(st.sampled_from(["v", "type", "ts", "host", "seq", "x"]),
                                msg_values, max_size=5) | msg_values, max_size=4))
def test_fuzz_stream_any_shapes(objs):
    data = b"".join(msgpack_pack(o) for o in objs)
    _decode(data)


def msgpack_pack(o):
    import msgpack
    try:
        return msgpack.packb(o, use_bin_type=True, strict_types=False)
    except (TypeError, ValueError, OverflowError):
        return b""


# -- config ---------------------------------------------------------------------------
KEYS = {
    None: ["interval", "log_rules", "outputs", "resets", "bogus"],
    "log_rules": ["dirs", "globs", "journald_sockets", "extra"],
    "outputs.stdout": ["format"],
    "outputs.segments": ["enabled", "dir", "max_segment_bytes", "max_segment_age_s",
                         "max_total_bytes"],
    "outputs.socket": ["enabled", "path", "mode", "queue_records"],
    "outputs.prometheus": ["enabled", "listen", "max_services", "max_paths_per_service",
                           "label_idle_s"],
    "resets": ["enabled", "max_records"],
}

toml_scalar = st.one_of(
    st.booleans(), st.integers(-2**63, 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["/var/log/", "*.log", "127.0.0.1:9477", "[::1]:1", "json", "msgpack",
                     "none", "/run/x.sock", "", "rel/path", "a:b:c", "localhost:99999"]),
    st.text(max_size=30))
toml_value = st.one_of(toml_scalar, st.lists(toml_scalar, max_size=4))


def _toml(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}"
                             for c in v) + '"'
    return "[" + ", ".join(_toml(x) for x in v) + "]"


doc = st.dictionaries(st.sampled_from(list(KEYS)),
                      st.dictionaries(st.integers(0, 10), toml_value, max_size=4), max_size=5)


def _render(d):
    lines = []
    for table, kv in d.items():
        names = KEYS[table]
        if table is not None:
            lines.append(f"[{table}]")
        for i, v in kv.items():
            lines.append(f"{names[i % len(names)]} = {_toml(v)}")
    # TOML forbids a top-level key after a table header: put the root table first
    return "\n".join(lines)


def _load(tmp_path, data):
    p = tmp_path / "fuzz.toml"
    p.write_bytes(data)
    try:
        cfg = config.load(str(p))
    except BadInput as e:
        msg = str(e)
        assert msg.startswith(f"{p}: "), msg
        assert "\n" not in msg, msg
        assert e.exit_code == EXIT_USAGE
        return None
    assert cfg.path == str(p)
    return cfg


@FUZZ
@given(doc)
def test_fuzz_config_documents(tmp_path_factory, d):
    root = {None: d.pop(None)} if None in d else {}
    root.update(d)
    _load(tmp_path_factory.mktemp("cfg"), _render(root).encode())


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda s: s.encode("utf-8")))
def test_fuzz_config_any_bytes(tmp_path_factory, data):
    _load(tmp_path_factory.mktemp("cfg"), data)
