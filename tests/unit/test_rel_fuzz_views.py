"""Fuzzing (docs/reliability.md): what `surgewatch tail` prints and `surgewatch plot` draws
from records of any shape, as a stream of a newer minor or a corrupt-but-decodable one may
hold: real records with fields replaced by values of any type. Bounded like
test_rel_fuzz.py (SURGEWATCH_FUZZ_EXAMPLES, default 200; SURGEWATCH_FUZZ_RANDOM=1 for
random examples).
Properties: a tail line is None or one line without control characters; plot's
series and its HTML picture are made (valid XML) or there is nothing to draw; never
another exception."""
import types
import xml.dom.minidom

from hypothesis import given
from hypothesis import strategies as st

from collector.commands.plot import Series, picture
from collector.records import model
from collector.views.plotsvg import render_html
from collector.views.recordlines import format_record
from collector.commands.tail_fold import ResetFold
from tests.unit.test_rel_fuzz import FUZZ


def _reset():
    ev = types.SimpleNamespace(comm="srv", direction="sent", kind="abort", state="ESTABLISHED",
                               reason="tcp_state", family=2, laddr="127.0.0.1", lport=80,
                               raddr="127.0.0.1", rport=4000, idle_ms=2000,
                               owner_source="accept")
    return model.reset_record("h", 1000.5, 0, "lb.service", 7, ev)


def _records(i):
    ts = 1000.0 + i
    return [
        model.rate_record("h", ts, seq=i, interval=1.0, service="app.service", pids=[7],
                          comms=["app"], log_writes=20, log_bytes=2000,
                          paths=[{"path": "/var/log/a.log", "writes": 20, "bytes": 2000,
                                  "pids": [7]}], resets_sent=2, resets_received=1),
        _reset(),
        _reset(),           # two: tail folds them into one line
        model.alert_record("h", ts, seq=i, state="open" if i == 0 else "close",
                           service="app.service", signal="log_writes_per_s", rate=20.0,
                           baseline=2.0, spread=1.0, ratio=10.0, threshold=6.0,
                           reason="above_baseline", started=ts - 1, peak=30.0, intervals=i,
                           top={"paths": [{"path": "/var/log/a.log"}],
                                "peers": [{"peer": "1.2.3.4:5"}],
                                "idle": [{"bucket": "1s-2s"}]},
                           ended=ts, duration_s=1.0, close_reason="recovered"),
        model.stats_record("h", ts, seq=i, interval=1.0, drain_ms=1.0, keys=1,
                           map_capacity=10, lost_events=0, unresolved_writes=0,
                           cpu_s=0.0, rss_bytes=1),
    ]


BASE = [model.meta_record("h", 999.0, 1.0, {"logwrites": {}}, "6.1", mode="run")] \
    + _records(0) + _records(1)
value = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
    | st.binary(max_size=4) | st.sampled_from(["sent", "received", "open", "close",
                                                "log_writes_per_s", "resets_sent_per_s",
                                                "new_service", "\x1b[2J", "a\nb"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                  max_size=3),
    max_leaves=6)
FIELDS = sorted({k for r in BASE for k in r if k not in ("v", "type")})
edit = st.tuples(st.integers(0, len(BASE) - 1), st.sampled_from(FIELDS) | st.text(max_size=6),
                 value)


def _edited(edits):
    recs = [dict(r) for r in BASE]
    for i, k, v in edits:
        recs[i][k] = v
    return recs


@FUZZ
@given(st.lists(edit, max_size=8), st.booleans())
def test_fuzz_tail_lines(edits, every_stats):
    for rec in _edited(edits):
        line = format_record(rec, every_stats)
        assert line is None or (isinstance(line, str) and "\n" not in line
                                and "\x1b" not in line)


@FUZZ
@given(st.lists(edit, max_size=8))
def test_fuzz_tail_folded_reset_lines(edits):
    fold = ResetFold()
    lines = []
    for rec in _edited(edits):
        lines += fold.see(rec, True)[0]
    lines += fold.flush()
    assert lines and all(isinstance(line, str) and "\n" not in line and "\x1b" not in line
                         for line in lines)


@FUZZ
@given(st.lists(edit, max_size=8))
def test_fuzz_plot_series_and_html(edits):
    s = Series()
    for rec in _edited(edits):
        s.add(rec)
    if not s.ends:
        return                           # load() says there is nothing to plot
    text = render_html(picture(s, "fuzz.msgpack"))
    xml.dom.minidom.parseString(text[text.index("<svg"):text.index("</svg>") + 6])
