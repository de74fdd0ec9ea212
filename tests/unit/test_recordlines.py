"""collector.views.recordlines: one readable line per record type (what `surgewatch tail`
prints in a terminal), and the --type filter of tail."""
import io
import types

import pytest

from collector.commands.tail import keep, parse_types, run_tail
from collector.errors import BadInput
from collector.records import model
from collector.records.stream import encode
from collector.views.recordlines import format_record


def reset(direction="sent", kind="abort", idle_ms=1500, remote="127.0.0.1", **kw):
    ev = types.SimpleNamespace(comm="srv", direction=direction, kind=kind, state="ESTABLISHED",
                               reason=kw.get("reason"), family=10 if ":" in remote else 2,
                               laddr=remote, lport=5000, raddr=remote, rport=41000,
                               idle_ms=idle_ms, owner_source="accept")
    return model.reset_record("web1", 1000.0, 4, "db.service", 321, ev)


def alert(state="open", signal="log_writes_per_s", baseline=100.0, ratio=50.0,
          reason="above_baseline", **kw):
    top = {"pids": [7], "comms": ["app"],
           "paths": [{"path": "/var/log/app.log", "writes_per_s": 5000.0, "bytes_per_s": 1,
                      "pids": [7]}]}
    if signal.startswith("resets"):
        top = {"pids": [7], "comms": ["app"], "peers": [{"peer": "10.0.0.9:443", "resets": 30}],
               "idle": [{"bucket": "2.05s-4.1s", "resets": 30}], "sampled_resets": 30}
    return model.alert_record("web1", 1000.0, seq=9, state=state, service="app.service",
                              signal=signal, rate=5000.0, baseline=baseline, spread=3.0,
                              ratio=ratio, threshold=300.0, reason=reason,
                              started=990.0, peak=6000.0, intervals=0, top=top, **kw)


def rate(writes, sent=None, received=None, interval=2.0):
    paths = [{"path": "/var/log/a.log", "writes": writes, "bytes": writes * 10, "pids": [7]}] \
        if writes else []
    return model.rate_record("web1", 1000.0, seq=3, interval=interval, service="app.service",
                             pids=[7] if writes else [], comms=["app"] if writes else [],
                             log_writes=writes, log_bytes=writes * 10, paths=paths,
                             resets_sent=sent, resets_received=received)


def stats(**extra):
    rec = model.stats_record("web1", 1000.0, seq=5, interval=1.0, drain_ms=1.25, keys=12,
                             map_capacity=10240, lost_events=0,
                             unresolved_writes=0, cpu_s=0.004, rss_bytes=21 << 20)
    rec.update(extra)
    return rec


def test_alert_open_names_signal_service_rate_ratio_baseline_and_top_path():
    line = format_record(alert())
    assert line.endswith("#9      ALERT  log writes/s  app.service  5000/s = 50.0x baseline "
                         "100.0/s (threshold 300.0/s)  top /var/log/app.log")


def test_alert_reset_signal_tops_peer_and_idle_bucket_and_new_service():
    line = format_record(alert(signal="resets_received_per_s"))
    assert "ALERT  resets received/s  app.service  5000/s = 50.0x baseline 100.0/s" in line
    assert line.endswith("top 10.0.0.9:443, idle 2.05s-4.1s")
    line = format_record(alert(baseline=1619.0, ratio=1.2, reason="new_service"))
    assert "5000/s = new service (threshold 300.0/s)" in line     # its own first intervals
    line = format_record(alert(baseline=None, ratio=None))
    assert "5000/s = no baseline (threshold 300.0/s)" in line


def test_alert_bytes_in_bytes_and_close_line():
    line = format_record(alert(signal="log_bytes_per_s"))
    assert "log bytes/s  app.service  4.9 KiB/s = 50.0x baseline 100 B/s (threshold 300 B/s)" \
        in line
    line = format_record(alert(state="close", ended=1060.0, duration_s=70.0,
                               close_reason="recovered"))
    assert line.endswith("#9      ALERT closed (recovered)  log writes/s  app.service  "
                         "now 5000/s, peak 6000/s over 70.0s")


def test_reset_line_direction_kind_service_peer_state_idle():
    line = format_record(reset())
    assert line.endswith("#4      reset  sent abort  db.service  pid 321 (srv)  peer "
                         "127.0.0.1:41000 (local 127.0.0.1:5000)  ESTABLISHED  idle 1.5s")
    line = format_record(reset(direction="received", kind=None, idle_ms=None, remote="::1",
                               reason="tcp_state"))
    assert "reset  received  db.service" in line and "peer [::1]:41000" in line
    assert line.endswith("idle -  reason tcp_state")


def test_rate_lines_with_writes_resets_or_both():
    assert rate(20).get("resets_sent") is None
    line = format_record(rate(20))
    assert line.endswith("#3      app.service  10.0 writes/s  100 B/s  /var/log/a.log  pids 7")
    only = format_record(rate(0, sent=0, received=40))
    assert only.endswith("#3      app.service  resets sent 0, received 40 (20.0/s)")
    assert "writes/s" not in only and "pids" not in only
    both = format_record(rate(20, sent=3, received=1))
    assert both.endswith("pids 7  resets sent 3 (1.50/s), received 1 (0.50/s)")
    assert "resets" not in format_record(rate(20, sent=0, received=0))


def test_rate_lines_with_load_and_writes_per_connection():
    from collector.aggregate.signals import load_ratios

    rec = rate(20)
    rec.update(conns_accepted=8, conns_connected=2, tcp_bytes_out=4096)
    rec.update(load_ratios(rec))
    assert format_record(rec).endswith(
        "pids 7  conns 10 (5.00/s), TCP out 2.0 KiB/s, 2 writes/conn")
    only = rate(0)
    only.update(conns_accepted=4, conns_connected=0, tcp_bytes_out=0)
    only.update(load_ratios(only))
    assert format_record(only).endswith("#3      app.service  conns 4 (2.00/s), 0 writes/conn")


def test_stats_lines_quiet_unless_asked_and_losses_by_meaning():
    assert format_record(stats()) is None
    line = format_record(stats(), every_stats=True)
    assert line.endswith("#5      stats  interval 1.00s  drain 1.2ms  keys 12/10240  "
                         "cpu 0.004s  rss 21.0 MiB")
    line = format_record(stats(lost_writes=2, resets_owner_unknown=1, reset_records_suppressed=7))
    assert line.endswith("#5      undercount: lost_writes=2; unattributed: resets_owner_unknown=1;"
                         " not recorded: reset_records_suppressed=7")


def test_unknown_type_shows_its_scalar_fields_escaped():
    rec = {"v": "1.9", "type": "future", "ts": 1000.0, "host": "h", "n": 3, "why": "a\nb",
           "nested": {"x": 1}}
    assert format_record(rec).endswith(" h future  n=3 why=a\\nb")


def test_parse_types_and_keep():
    assert parse_types(("alert,reset", "rate")) == {"alert", "reset", "rate"}
    with pytest.raises(BadInput, match=r"--type alerts: no such record type; use one or more "
                                       r"of meta, rate, stats, reset, alert, dropped"):
        parse_types(("alerts",))
    assert keep(reset(), types={"reset"}) and not keep(rate(1), types={"reset"})
    assert keep({"type": "dropped", "dropped": 1}, types={"alert"})   # gaps always shown
    assert keep(alert(), services=("app.*",)) and not keep(reset(), services=("app.*",))
    assert not keep(stats(), services=("app.*",))


def test_tail_type_filter_prints_only_those_records(tmp_path):
    f = tmp_path / "s.msgpack"
    recs = [model.meta_record("web1", 999.0, 1.0, {}, "6.1", mode="run", version="t"),
            rate(20, sent=1, received=0), reset(), alert(), stats()]
    f.write_bytes(b"".join(encode(r) for r in recs))

    class TTY(io.StringIO):
        def isatty(self):
            return True

    out = TTY()
    assert run_tail(f, stdout=out, stderr=io.StringIO(), types={"reset", "stats"}) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and " reset  sent abort " in lines[0] and " stats  " in lines[1]
    out = TTY()
    run_tail(f, stdout=out, stderr=io.StringIO())
    assert [l.split()[3] for l in out.getvalue().splitlines()] == ["start", "#3", "#4", "#9"]


def test_dropped_gap_line_counts_in_words():
    line = format_record({"type": "dropped", "ts": 1000.0, "host": "h", "dropped": 1,
                          "dropped_total": 5})
    assert line.endswith(" h gap     1 record dropped for this reader (it read too slowly; "
                         "5 in all)")
    assert " 3 records dropped" in format_record({"type": "dropped", "dropped": 3})


def test_meta_line_names_probes_and_which_are_off():
    rec = model.meta_record("web1", 1000.0, 0.5, {"logwrites": {"enabled": True},
                                                  "resets": {"enabled": False, "reason": "x"}},
                            "6.1", mode="run", version="0.1.0")
    assert format_record(rec).endswith(" web1 start   surgewatch 0.1.0 (run), interval 0.5s, "
                                       "kernel 6.1, probes logwrites,resets (off)")


def test_folded_resets_count_of_counted_interval_peers_and_idle():
    """tail's one line for a service's resets of one interval (collector/commands/
    tail_fold.py): the records, of the rate record's count when the record limit left some
    out; a backend as addr:port, clients as the address and their ports; +N more."""
    from collector.views.recordlines import format_reset_fold

    recs = [reset(remote="fe80::1"), reset(remote="fe80::1", direction="received"),
            reset(remote="10.0.0.2", idle_ms=None), reset(remote="10.0.0.3", idle_ms=90_000),
            reset(remote="10.0.0.4", idle_ms=5)]
    recs[1]["remote_port"] = 41001
    line = format_reset_fold(recs, interval=0.5, counted=250)
    assert line.split(" ", 2)[2] == ("web1 #4      resets db.service  5 of 250 in 0.5s "
                    "(sent 4, received 1)  peers [fe80::1] (2 ports) x2, 10.0.0.2:41000 x1, "
                    "10.0.0.3:41000 x1, +1 more  idle 5ms-1.5m")
    assert format_reset_fold(recs[:1]) == format_record(recs[0])   # one: its own line


def test_lost_messages_on_the_rate_line_and_the_log_lost_alert():
    rec = rate(0)
    rec["log_lost"] = 940
    assert format_record(rec).endswith("#3      app.service  0 writes/s  0 B/s  -  pids -  "
                                       "LOST 940 (journald dropped)")
    assert "LOST" not in format_record(rate(5))
    opened = model.alert_record("web1", 1000.0, seq=9, state="open", service="app.service",
                                signal="log_lost", rate=940.0, baseline=None, spread=None,
                                ratio=None, threshold=0.0, reason="journald_suppressed",
                                started=999.0, peak=940.0, intervals=1, top={}, lost=940)
    assert format_record(opened).endswith("#9      ALERT  log lost  app.service  lost: 940 "
                                          "(journald dropped them: its rate limit)")
    closed = dict(opened, state="close", ended=1010.0, duration_s=11.0, close_reason="no_drops",
                  lost=1000)
    assert format_record(closed).endswith("#9      ALERT closed (no more drops)  log lost  "
                                          "app.service  lost: 1000 over 11.0s")


def test_alerts_judged_against_the_host_limit_or_a_profile_say_so():
    over = alert(baseline=None, ratio=None, reason="above_host_limit",
                 limit={"limit": "capacity", "key": "capacity:/var/log/app/*.log",
                        "allowed_per_s": 500.0})
    assert "= over host limit capacity:/var/log/app/*.log (threshold 300.0/s)" in \
        format_record(over)
    prof = alert(baseline=20.0, ratio=250.0, reason="above_profile")
    assert "= 250.0x profile 20.0/s (threshold 300.0/s)" in format_record(prof)


def test_a_reset_alert_names_the_idle_timeout():
    rec = alert(signal="resets_received_per_s")
    rec["top"]["idle_timeouts"] = [{"peer": "10.0.0.9:443", "line": "resets from 10.0.0.9:443 "
                                    "after ~60 s idle: an idle timeout near 60 s (30 of 30 in "
                                    "32.8s-65.5s)"}]
    assert format_record(rec).endswith("top 10.0.0.9:443, idle 2.05s-4.1s, resets from "
                                       "10.0.0.9:443 after ~60 s idle: an idle timeout near "
                                       "60 s (30 of 30 in 32.8s-65.5s)")
    rec["top"]["idle_timeouts"] = [{"peer": "x", "line": "a\x1b[2Jb"}]
    assert "\x1b" not in format_record(rec)
