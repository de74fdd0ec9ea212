"""collector.aggregate.resets and the pure parts of collector.probes.resets."""
import gzip

import pytest

from collector.aggregate.idle_hist import bucket_bounds_ms, bucket_label, bucket_of
from collector.aggregate.resets import (
    AttributedResets,
    EventBudget,
    ResetWindow,
    aggregate_resets,
    idle_mode,
    reset_counts_by_service,
)
from collector.errors import ProbeUnavailable
from collector.probes.abi import abi
from collector.probes.kernel import parse_format
from collector.probes.reset_kernel import raw_macros, reset_tracepoints
from collector.probes.resets import kernel_hz

NB = 24


def line(service="api.service", pid=10, direction="sent", kind="abort", state="ESTABLISHED",
         reason=None, count=1, idle_unknown=0, hist=None):
    return AttributedResets(service, pid, "api", direction, kind if direction == "sent" else None,
                            state, reason, count, idle_unknown, tuple(hist or [0] * NB))


def test_abi_bucket_count_matches():
    assert abi().SW_IDLE_BUCKETS == NB


@pytest.mark.parametrize("ms,bucket", [
    (0, 0), (0.5, 0), (1, 1), (1.9, 1), (2, 2), (3, 2), (4, 3), (1023, 10), (1024, 11),
    (2000, 11), (2047, 11), (2048, 12), (3_600_000, 22), (2 ** 22, 23), (10 ** 12, 23)])
def test_bucket_of_matches_kernel_log2(ms, bucket):
    assert bucket_of(ms, NB) == bucket
    lo, hi = bucket_bounds_ms(bucket, NB)
    assert lo <= ms and (hi is None or ms < hi)


def test_bucket_labels_span_1ms_to_1h():
    assert bucket_label(0, NB) == "<1ms"
    assert bucket_label(1, NB) == "1ms-2ms"
    assert bucket_label(11, NB) == "1.02s-2.05s"
    assert bucket_label(22, NB).endswith("h") or "m-" in bucket_label(22, NB)
    assert bucket_label(23, NB).startswith(">=")


def test_aggregate_per_service_counts_and_tallies():
    h = [0] * NB
    h[11] = 3
    per = aggregate_resets([
        line(count=3, hist=h, reason="tcp_abort_on_close"),
        line(direction="received", count=2, idle_unknown=2, state="SYN_SENT"),
        line(service="kernel (no socket)", pid=0, kind="no_socket", state=None, count=5,
             idle_unknown=5, reason="no_socket"),
        line(service="web", pid=20, count=0),          # zero lines are dropped
    ])
    assert set(per) == {"api.service", "kernel (no socket)"}
    api = per["api.service"].as_dict()
    assert (api["resets_sent"], api["resets_received"]) == (3, 2)
    assert api["kinds"] == {"abort": 3}
    assert api["states"] == {"sent:ESTABLISHED": 3, "received:SYN_SENT": 2}
    assert api["reasons"] == {"tcp_abort_on_close": 3}
    assert api["idle_hist"][11] == 3 and sum(api["idle_hist"]) == 3
    assert api["idle_unknown"] == 2 and api["pids"] == [10]
    ks = per["kernel (no socket)"].as_dict()
    assert ks["kinds"] == {"no_socket": 5} and ks["states"] == {"sent:-": 5} and ks["pids"] == []
    assert reset_counts_by_service(per) == {"api.service": (3, 2), "kernel (no socket)": (5, 0)}


def test_idle_mode_picks_fullest_bucket():
    h = [0] * NB
    h[3], h[11] = 2, 7
    assert idle_mode(h) == (11, 7)
    assert idle_mode([0] * NB) is None


def test_window_accumulates_and_orders():
    w = ResetWindow(max_peers=2)
    w.add_interval(aggregate_resets([line(count=2)]), 1.0)
    w.add_interval(aggregate_resets([line(count=1), line(service="b", pid=3, count=9)]), 1.0,
                   events_lost=4)
    assert [r.service for r in w.top(5)] == ["b", "api.service"]
    assert w.services["api.service"].sent == 3
    assert w.totals()["resets_sent"] == 12 and w.duration_s == 2.0 and w.events_lost == 4
    for peer in ("1.1.1.1:80", "2.2.2.2:80", "3.3.3.3:80", "1.1.1.1:80"):
        w.add_event("b", peer)
    assert dict(w.peers["b"]) == {"1.1.1.1:80": 2, "2.2.2.2:80": 1}   # bounded
    assert w.events_seen == 4


def test_event_budget_counts_suppressed():
    b = EventBudget(2)
    assert [b.take() for _ in range(5)] == [True, True, False, False, False]
    assert b.next_interval() == 3
    assert b.take()


# --- probe layouts, pure ---------------------------------------------------------------

def fmt(*fields):
    return parse_format("\n".join(
        f"\tfield:{decl};\toffset:{off};\tsize:{size};\tsigned:0;" for decl, off, size in fields))


SEND_618 = fmt(("const void * skbaddr", 8, 8), ("const void * skaddr", 16, 8), ("int state", 24, 4),
               ("enum sk_rst_reason reason", 28, 4), ("__u8 saddr[28]", 32, 28),
               ("__u8 daddr[28]", 60, 28))
SEND_61 = fmt(("const void * skbaddr", 8, 8), ("const void * skaddr", 16, 8),
              ("__u16 sport", 24, 2), ("__u16 dport", 26, 2), ("__u16 family", 28, 2),
              ("__u8 saddr[4]", 30, 4), ("__u8 daddr[4]", 34, 4), ("__u8 saddr_v6[16]", 38, 16),
              ("__u8 daddr_v6[16]", 54, 16))
RECV = fmt(("const void * skaddr", 8, 8), ("__u16 sport", 16, 2), ("__u16 dport", 18, 2),
           ("__u16 family", 20, 2), ("__u8 saddr[4]", 22, 4), ("__u8 daddr[4]", 26, 4),
           ("__u8 saddr_v6[16]", 30, 16), ("__u8 daddr_v6[16]", 46, 16),
           ("__u64 sock_cookie", 64, 8))
STATE = fmt(("const void * skaddr", 8, 8), ("int oldstate", 16, 4), ("int newstate", 20, 4),
            ("__u16 sport", 24, 2), ("__u16 dport", 26, 2), ("__u16 family", 28, 2),
            ("__u16 protocol", 30, 2))


def test_tracepoints_618_trace_socketless_replies():
    macros, no_socket = reset_tracepoints(SEND_618, RECV, STATE, RECV)
    assert macros == {"HAVE_DESTROY": 1} and no_socket


def test_tracepoints_61_no_socketless_replies_no_destroy():
    macros, no_socket = reset_tracepoints(SEND_61, RECV, STATE, None)
    assert macros == {} and not no_socket


def test_tracepoints_missing_is_a_typed_error():
    with pytest.raises(ProbeUnavailable, match="tcp_send_reset"):
        reset_tracepoints(None, RECV, STATE)
    with pytest.raises(ProbeUnavailable, match="inet_sock_set_state"):
        reset_tracepoints(SEND_618, RECV, None)


class RawArgs:
    """BTF as raw_macros reads it: the arguments each raw tracepoint passes."""
    def __init__(self, **n):
        self.n = n

    def raw_tracepoint_params(self, name):
        from collector.probes.btf import BTFError
        if name not in self.n:
            raise BTFError(f"raw tracepoint {name} not in kernel BTF")
        return self.n[name]


def test_raw_args_reason_only_where_tcp_send_reset_passes_one():
    names = ["inet_sock_set_state", "tcp_send_reset", "tcp_receive_reset"]
    assert raw_macros(RawArgs(inet_sock_set_state=3, tcp_send_reset=3, tcp_receive_reset=1),
                      names) == {"SEND_HAS_REASON": 1}
    assert raw_macros(RawArgs(inet_sock_set_state=3, tcp_send_reset=2, tcp_receive_reset=1),
                      names) == {}


def test_raw_args_unknown_or_missing_is_a_typed_error():
    with pytest.raises(ProbeUnavailable, match="inet_sock_set_state passes 4 arguments, "
                                               "this probe knows 3"):
        raw_macros(RawArgs(inet_sock_set_state=4), ["inet_sock_set_state"])
    with pytest.raises(ProbeUnavailable, match="raw tracepoint tcp_destroy_sock not in kernel BTF"):
        raw_macros(RawArgs(), ["tcp_destroy_sock"])


def test_kernel_hz_from_config(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot" / "config-6.1.0-x").write_text("# c\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n")
    assert kernel_hz("6.1.0-x", root=str(tmp_path)) == 250
    with gzip.open(tmp_path / "proc" / "config.gz", "wt") as f:
        f.write("CONFIG_HZ=1000\n")
    assert kernel_hz("6.1.0-x", root=str(tmp_path)) == 1000


def test_view_renders_histogram_and_escapes_names():
    from collector.views.resets_view import render_reset_columns, render_resets, resets_json

    h = [0] * NB
    h[11], h[12] = 4, 1
    w = ResetWindow()
    w.add_interval(aggregate_resets([line(service="evil\x1b[2J", count=5, hist=h,
                                          reason="tcp_state")]), 2.0)
    w.add_event("evil\x1b[2J", "10.0.0.9:443")
    text = render_resets(w, inventory={}, idle_threshold_s=300)
    assert "\x1b" not in text and "evil\\x1b[2J" in text
    assert "1.02s-2.05s | " + "#" * 40 + " 4" in text
    assert "mode 1.02s-2.05s" in text and "peers:   10.0.0.9:443 1" in text
    assert "2.50" in render_reset_columns(w)          # 5 sent over 2 s
    doc = resets_json(w)
    assert doc["resets_sent"] == 5 and doc["services"][0]["resets_sent_per_s"] == 2.5
