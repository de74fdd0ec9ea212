"""Record types that flow between stages, and the stream schema version.

probes -> host: LogWriteCount (raw, per process+fd+file, one interval)
host -> aggregate: LogWrite (enriched with service and path)
aggregate -> sinks: stream records (dicts, see docs/stream.md)
"""
from typing import NamedTuple

from collector import __version__

# "MAJOR.MINOR": readers accept any minor of their major, refuse a newer major.
SCHEMA_VERSION = "1.12"  # 1.1: rate.resets_*, stats.resets_*, `reset` records; 1.2: `alert`;
#                          1.3: rate.paths bounded, the rest in one "(other)" entry;
#                          1.4: rate.loss_risk, `alert` signal log_loss_risk with `limit`;
#                          1.5: rate.conns_*, tcp_bytes_out and ratios, stats.load_lost;
#                          1.6: rate.owner, the "(other)" rate record with rate.folded;
#                          1.7: stats.lost_writes_by_uid;
#                          1.8: rate.log_lost, `alert` signal log_lost with `lost`;
#                          1.9: `alert` reasons above_host_limit (with `limit`) and
#                               above_profile (with `profile`); `alert` top.idle_timeouts;
#                          1.10: rate.resets_sent_by_kind, rate.resets_idle_hist;
#                          1.11: stats.probe_runs_missed;
#                          1.12: meta probes.<probe>.programs (stored or compiled)
SCHEMA_MAJOR = 1


class LogWrite(NamedTuple):
    """Log writes by one process to one log destination during one interval (a tuple:
    one is built per drained key, 10,000s a second on a busy host)."""

    pid: int          # tgid
    comm: str         # process name as the kernel had it at the first counted write
    service: str      # systemd unit, container id, else comm
    path: str         # log destination: file path, or "journald:<socket path>"
    writes: int       # successful write-family calls
    bytes: int        # bytes those calls wrote


# ---------------------------------------------------------------------------
# Stream records (see docs/stream.md). Builders return plain dicts ready for
# collector.records.stream.encode(); every record carries v, type, ts and host.

RECORD_META = "meta"
RECORD_RATE = "rate"
RECORD_STATS = "stats"
RECORD_RESET = "reset"        # built by reset_record below
RECORD_ALERT = "alert"        # schema 1.2, built by alert_record
RECORD_TYPES = (RECORD_META, RECORD_RATE, RECORD_STATS, RECORD_RESET, RECORD_ALERT)

# `stats` fields that count what was lost or could not be attributed in the interval
# (docs/stream.md): tail shows a stats line when one is non-zero, Prometheus sums each
# into a counter, snapshot notes them.
LOSS_FIELDS = ("lost_events", "unresolved_writes", "lost_writes", "fd_walk_failed",
               "segment_dropped_records", "probe_runs_missed")
RESET_LOSS_FIELDS = ("resets_lost", "resets_events_lost", "resets_owner_unknown",
                     "resets_owner_map_full", "reset_records_suppressed", "load_lost")


def schema_major(version):
    """The MAJOR part of a "MAJOR.MINOR" schema version string; ValueError if malformed."""
    if not isinstance(version, str):
        raise ValueError(f"schema version must be a string like {SCHEMA_VERSION!r}, got {version!r}")
    major, sep, minor = version.partition(".")
    if not (sep and major.isdigit() and minor.isdigit() and major.isascii() and minor.isascii()):
        raise ValueError(f"malformed schema version {version!r} (expected MAJOR.MINOR)")
    return int(major)


def clean_text(text):
    """`text` made encodable as UTF-8.

    Names read from the host with os.fsdecode() carry undecodable bytes as lone
    surrogates; each becomes a visible escape (byte 0xff -> "\\xff") instead of making
    the encoder fail. Valid text is returned unchanged.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    out = []
    for ch in text:
        cp = ord(ch)
        if 0xDC80 <= cp <= 0xDCFF:
            out.append(f"\\x{cp - 0xDC00:02x}")
        elif 0xD800 <= cp <= 0xDFFF:
            out.append(f"\\u{cp:04x}")
        else:
            out.append(ch)
    return "".join(out)


def _base(type_, host, ts):
    return {"v": SCHEMA_VERSION, "type": type_, "ts": float(ts), "host": host}


def meta_record(host, ts, interval, probes, kernel, *, mode, argv=(), version=None):
    """The first record of a stream: how the collector was started.

    interval: configured interval length (s); probes: probe name -> status map
    (at least {"enabled": bool}, plus "reason" when not enabled); kernel: `uname -r`;
    mode: "run" or "snapshot"; argv: the command line.
    """
    if version is None:
        version = __version__
    if not isinstance(probes, dict):
        raise TypeError(f"probes must be a dict of probe name -> status, got {type(probes).__name__}")
    rec = _base(RECORD_META, host, ts)
    rec.update(
        started=float(ts),
        interval=float(interval),
        probes=probes,
        kernel=kernel,
        mode=mode,
        argv=list(argv),
        version=version,
    )
    return rec


def rate_record(host, ts, *, seq, interval, service, pids, comms, log_writes, log_bytes,
                paths, log_writes_per_s=None, log_bytes_per_s=None,
                resets_sent=None, resets_received=None, loss_risk=None, owner=None,
                folded=None):
    """One service during one interval (the body comes from aggregate.logrates.aggregate_interval).

    interval is the measured interval length in seconds and must be > 0. The per-second
    rates are computed from the totals when not given. resets_* are added only when
    not None (the resets probe fills them in); loss_risk (schema 1.4) only when the
    service is at risk (collector.aggregate.lossrisk adds it to the daemon's records).
    """
    if not interval > 0:
        raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
    rec = _base(RECORD_RATE, host, ts)
    rec.update(
        seq=int(seq),
        interval=float(interval),
        service=service,
        pids=sorted(pids),
        comms=sorted(set(comms)),
        log_writes=int(log_writes),
        log_bytes=int(log_bytes),
        log_writes_per_s=float(log_writes_per_s if log_writes_per_s is not None
                               else log_writes / interval),
        log_bytes_per_s=float(log_bytes_per_s if log_bytes_per_s is not None
                              else log_bytes / interval),
        paths=list(paths),       # the caller's path dicts, not copies: 10,000s per interval
    )
    if resets_sent is not None:
        rec["resets_sent"] = resets_sent
    if resets_received is not None:
        rec["resets_received"] = resets_received
    if loss_risk:
        rec["loss_risk"] = list(loss_risk)
    if owner is not None:       # 1.6: collector/aggregate/slots.py
        rec["owner"] = owner
    if folded is not None:
        rec["folded"] = int(folded)
    return rec
# rate.resets_sent_by_kind, rate.resets_idle_hist (schema 1.10): the service's sent resets
# by kind and its idle-before-reset histogram, added by collector.aggregate.resets.add_resets
RESETS_SENT_BY_KIND = "resets_sent_by_kind"
RESETS_IDLE_HIST = "resets_idle_hist"
# rate.log_lost (schema 1.8): messages journald dropped of the service in the interval,
# added by collector.aggregate.loglost from journald's own notices


# What the stages report into `stats` besides the collector's own fields, in record
# order (docs/stream.md): the log-write probe, the resets stage, the host lookups, the
# outputs (collector/pipeline/runtime.py gathers them). Each is optional: a stage that
# does not run reports nothing.
STATS_REPORTED = {
    "lost_writes": int, "lost_writes_by_uid": dict, "iov_truncated": int,
    "fd_walk_failed": int,                                           # log-write probe
    "probe_runs_missed": int,                                        # both probes (kernel)
    "resets_events_lost": int, "resets_lost": int, "resets_owner_unknown": int,
    "resets_owner_map_full": int, "load_lost": int,
    "reset_records_suppressed": int,                                 # resets stage
    "host_resource_errors": int,                                     # host lookups
    "segment_dropped_records": int,                                  # outputs
}


def stats_record(host, ts, *, seq, interval, drain_ms, keys, map_capacity, lost_events,
                 unresolved_writes, cpu_s, rss_bytes, **reported):
    """The collector's own health during one interval (emitted every interval, quiet or
    not), with the fields each stage reported (STATS_REPORTED; ValueError for another)."""
    unknown = sorted(set(reported) - set(STATS_REPORTED))
    if unknown:
        raise ValueError(f"not a stats field: {', '.join(unknown)}")
    rec = _base(RECORD_STATS, host, ts)
    rec.update(
        seq=int(seq),
        interval=float(interval),
        drain_ms=float(drain_ms),
        keys=int(keys),
        map_capacity=int(map_capacity),
        # always 0: no map evicts counts (the count maps are plain hashes; a full one's
        # loss is lost_writes / resets_lost); kept for 1.x readers (docs/stream.md)
        evictions=0,
        lost_events=int(lost_events),
        unresolved_writes=int(unresolved_writes),
        cpu_s=float(cpu_s),
        rss_bytes=int(rss_bytes),
    )
    for key, type_ in STATS_REPORTED.items():
        if key in reported:
            rec[key] = type_(reported[key])
    return rec


ALERT_STATES = ("open", "close")


def alert_record(host, ts, *, seq, state, service, signal, rate, baseline, spread, ratio,
                 threshold, reason, started, peak, intervals, top, ended=None,
                 duration_s=None, close_reason=None, limit=None, lost=None, profile=None):
    """An alert opened or closed (body from collector.aggregate.alerts.Alert.fields).

    baseline, spread and ratio are None when the service has no baseline yet (or a
    baseline of 0 for ratio); ended, duration_s and close_reason only on state "close";
    limit (schema 1.4) only on signal log_loss_risk (1.9: and reason above_host_limit): the
    limit the rate was judged against; lost (schema 1.8) only on signal log_lost: the
    messages journald dropped since it opened; profile (1.9) only on reason above_profile.
    """
    if state not in ALERT_STATES:
        raise ValueError(f"alert state must be one of {ALERT_STATES}, got {state!r}")
    rec = _base(RECORD_ALERT, host, ts)
    rec.update(
        seq=int(seq), state=state, service=service, signal=signal, rate=float(rate),
        baseline=None if baseline is None else float(baseline),
        spread=None if spread is None else float(spread),
        ratio=None if ratio is None else float(ratio),
        threshold=float(threshold), reason=reason, started=float(started),
        peak=float(peak), intervals=int(intervals), top=dict(top or {}),
    )
    if state == "close":
        rec.update(ended=float(ended), duration_s=float(duration_s), close_reason=close_reason)
    if limit is not None:
        rec["limit"] = dict(limit)
    if lost is not None:
        rec["lost"] = int(lost)
    if profile is not None:
        rec["profile"] = dict(profile)
    return rec


def reset_record(host, ts, seq, service, pid, ev):
    rec = {"v": SCHEMA_VERSION, "type": RECORD_RESET, "ts": float(ts), "host": host,
           "seq": int(seq), "service": service, "pid": int(pid), "comm": ev.comm,
           "direction": ev.direction, "kind": ev.kind, "state": ev.state, "reason": ev.reason,
           "family": "ipv6" if ev.family == 10 else "ipv4",
           "local": ev.laddr, "local_port": ev.lport, "remote": ev.raddr, "remote_port": ev.rport,
           "idle_ms": ev.idle_ms, "owner_source": ev.owner_source}
    return rec
