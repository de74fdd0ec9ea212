"""One line per stream record for a person (`surgewatch tail` in a terminal): every record
type with its content, names escaped. Field meanings: docs/stream.md."""
import datetime as dt

from collector.aggregate.loglost import LOG_LOST
from collector.aggregate.lossrisk import LOG_LOSS_RISK
from collector.aggregate.profile import SIGNAL_LABELS
from collector.aggregate.idle_hist import fmt_ms
from collector.aggregate.signals import LOG_BYTES, LOG_WRITES
from collector.records.model import LOSS_FIELDS
from collector.views.text import escape, format_bytes, format_rate, plural

# stats counters by what they mean for the interval's other records
_UNDERCOUNT = LOSS_FIELDS + ("resets_lost", "load_lost")
_UNATTRIBUTED = ("resets_owner_unknown", "resets_owner_map_full")
_UNSAMPLED = ("resets_events_lost", "reset_records_suppressed")
MAX_PIDS = 8


def _when(ts):
    try:
        t = dt.datetime.fromtimestamp(float(ts))
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def _s(v):
    return escape(str(v)) if v is not None else "-"


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _seq(rec):
    return f"#{_s(rec.get('seq', '?')):<6}"


def _pids(pids):
    pids = pids if isinstance(pids, list) else []
    text = ",".join(str(p) for p in pids[:MAX_PIDS])
    return text + (f" +{len(pids) - MAX_PIDS}" if len(pids) > MAX_PIDS else "")


def _addr(host, port):
    host, port = _s(host), _s(port)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _per_s(signal, v):
    """A rate of `signal` with its unit: 1.2 KiB/s for bytes, 12.0/s otherwise."""
    if not _num(v):
        return "-"
    return f"{format_bytes(v)}/s" if signal == LOG_BYTES else f"{format_rate(v)}/s"


def _probe(name, status):
    off = isinstance(status, dict) and status.get("enabled") is False
    return _s(name) + (" (off)" if off else "")


def _meta(head, rec):
    probes = rec.get("probes")
    if isinstance(probes, dict):
        probes = ",".join(_probe(name, status) for name, status in probes.items())
    else:
        probes = ",".join(_s(p) for p in probes) if isinstance(probes, list) else ""
    interval = rec.get("interval")
    return (f"{head} start   surgewatch {_s(rec.get('version', '?'))} "
            f"({_s(rec.get('mode', '?'))}), interval "
            f"{f'{interval:g}s' if _num(interval) else '?'}, "
            f"kernel {_s(rec.get('kernel', '?'))}, probes {probes or '-'}")


def _rate(head, rec):
    parts = []
    paths = rec.get("paths") if isinstance(rec.get("paths"), list) else []
    writes = rec.get("log_writes_per_s", 0)
    sent = rec.get("resets_sent") if _num(rec.get("resets_sent")) else 0
    received = rec.get("resets_received") if _num(rec.get("resets_received")) else 0
    conns = sum(rec.get(k) for k in ("conns_accepted", "conns_connected") if _num(rec.get(k)))
    tcp_out = rec.get("tcp_bytes_out") if _num(rec.get("tcp_bytes_out")) else 0
    if paths or (_num(writes) and writes > 0) or not (sent or received or conns or tcp_out):
        where = _s(paths[0].get("path", "?")) if paths and isinstance(paths[0], dict) else "-"
        if len(paths) > 1:
            where += f" (+{len(paths) - 1} more)"
        bps = rec.get("log_bytes_per_s", 0)
        parts += [f"{format_rate(writes) if _num(writes) else '?'} writes/s",
                  f"{format_bytes(bps) if _num(bps) else '?'}/s", where,
                  f"pids {_pids(rec.get('pids')) or '-'}"]
    length = rec.get("interval")

    def count(n):
        if n and _num(length) and length > 0:
            return f"{n} ({format_rate(n / length)}/s)"
        return str(n)
    if sent or received:          # a reset-only service has no writes, paths or pids
        parts.append(f"resets sent {count(sent)}, received {count(received)}")
    if conns or tcp_out:          # its load (schema 1.5) and what it logs per connection
        load = [f"conns {count(conns)}"]
        if tcp_out and _num(length) and length > 0:
            load.append(f"TCP out {format_bytes(tcp_out / length)}/s")
        if _num(rec.get("log_writes_per_conn")):
            load.append(f"{rec['log_writes_per_conn']:.3g} writes/conn")
        parts.append(", ".join(load))
    risks = rec.get("loss_risk") if isinstance(rec.get("loss_risk"), list) else []
    parts += [_risk(r) for r in risks if isinstance(r, dict)]
    if _num(rec.get(LOG_LOST)) and rec[LOG_LOST] > 0:     # schema 1.8: journald dropped them
        parts.append(f"LOST {rec[LOG_LOST]:g} (journald dropped)")
    return f"{head} {_seq(rec)} {_s(rec.get('service', '?'))}  " + "  ".join(parts)


def _risk(entry):
    """One loss_risk entry of a rate record: which limit and by how much."""
    if entry.get("limit") == "journald":
        n, span = entry.get("messages"), entry.get("window_s")
        burst, per = entry.get("burst"), entry.get("interval_s")
        sure = ", dropping" if entry.get("certain") else ""
        return (f"LOSS RISK journald: {_g(n)} msgs in {_secs(span)}s > burst {_s(burst)} "
                f"per {_g(per)}s{sure}")
    return (f"LOSS RISK capacity {_s(entry.get('glob'))}: "
            f"{_per_s(None, entry.get('rate'))} > {_per_s(None, entry.get('capacity'))}")


def _g(v):
    return f"{v:g}" if _num(v) else "?"


def _secs(v):
    if not _num(v):
        return "?"
    return f"{v:.2g}" if v < 10 else f"{v:.0f}"


def _loss_alert(head, rec):
    """A log_loss_risk alert: the limit, not a baseline."""
    limit = rec.get("limit") if isinstance(rec.get("limit"), dict) else {}
    service = _s(rec.get("service", "?"))
    if limit.get("limit") == "journald":
        what = (f"journald burst {_s(limit.get('burst'))} per {_g(limit.get('interval_s'))}s "
                f"({_s(limit.get('source'))})")
    else:
        what = f"capacity {_s(limit.get('glob'))} {_per_s(None, limit.get('capacity'))}"
    if rec.get("state") == "close":
        dur = rec.get("duration_s")
        return (f"{head} {_seq(rec)} ALERT closed (below limit)  log loss risk  {service}  "
                f"peak {_per_s(None, rec.get('peak'))}{f' over {dur:.1f}s' if _num(dur) else ''}"
                f"  {what}")
    return (f"{head} {_seq(rec)} ALERT  log loss risk  {service}  "
            f"{_per_s(None, rec.get('rate'))} > {_per_s(None, rec.get('threshold'))} = {what}"
            f"{_top(LOG_WRITES, rec.get('top'))}")


def _lost_alert(head, rec):
    """A log_lost alert: what journald said it dropped."""
    lost = rec.get("lost")
    lost = f"{lost:g}" if _num(lost) else "?"
    service = _s(rec.get("service", "?"))
    if rec.get("state") == "close":
        dur = rec.get("duration_s")
        return (f"{head} {_seq(rec)} ALERT closed (no more drops)  log lost  {service}  "
                f"lost: {lost}{f' over {dur:.1f}s' if _num(dur) else ''}")
    return (f"{head} {_seq(rec)} ALERT  log lost  {service}  lost: {lost} "
            f"(journald dropped them: its rate limit)")


def _reset(head, rec):
    direction = _s(rec.get("direction"))
    what = f"{direction} {_s(rec.get('kind'))}" if rec.get("kind") else direction
    who = _s(rec.get("service", "?"))
    if rec.get("pid"):
        who += f"  pid {rec['pid']}" + (f" ({_s(rec['comm'])})" if rec.get("comm") else "")
    idle = rec.get("idle_ms")
    line = (f"{head} {_seq(rec)} reset  {what}  {who}  "
            f"peer {_addr(rec.get('remote'), rec.get('remote_port'))} "
            f"(local {_addr(rec.get('local'), rec.get('local_port'))})  "
            f"{_s(rec.get('state'))}  idle {fmt_ms(idle) if _num(idle) else '-'}")
    if rec.get("reason"):
        line += f"  reason {_s(rec['reason'])}"
    return line


TOP_PEERS = 3       # peers a folded reset line names


def _peers(resets):
    """The top peers of reset records by count: addr:port when all of an address's
    resets had one port (a backend), else the address and how many ports (clients)."""
    count, ports = {}, {}
    for r in resets:
        host = _s(r.get("remote"))
        count[host] = count.get(host, 0) + 1
        ports.setdefault(host, set()).add(_s(r.get("remote_port")))
    top = sorted(count, key=lambda h: (-count[h], h))
    shown = []
    for h in top[:TOP_PEERS]:
        addr = f"[{h}]" if ":" in h else h
        addr += f":{next(iter(ports[h]))}" if len(ports[h]) == 1 else \
            f" ({len(ports[h])} ports)"
        shown.append(f"{addr} x{count[h]}")
    more = f", +{len(top) - TOP_PEERS} more" if len(top) > TOP_PEERS else ""
    return ", ".join(shown) + more


def format_reset_fold(resets, interval=None, counted=None):
    """One line for one service's `reset` records of one interval (tail folds them so
    the alert lines of a reset storm stay in view): how many (of how many the rate record
    counted, when the per-interval record limit left some out), sent and received, the
    interval's length, the top peers and the idle range. One record: its own line."""
    if len(resets) == 1:
        return format_record(resets[0])
    first = resets[0]
    head = f"{_when(first.get('ts'))} {_s(first.get('host', '?'))}"
    sent = sum(1 for r in resets if r.get("direction") == "sent")
    of = f" of {counted}" if _num(counted) and counted > len(resets) else ""
    length = f" in {interval:.3g}s" if _num(interval) and interval > 0 else ""
    idle = [r["idle_ms"] for r in resets if _num(r.get("idle_ms"))]
    low, high = (fmt_ms(min(idle)), fmt_ms(max(idle))) if idle else (None, None)
    span = "" if not idle else f"  idle {low}" + (f"-{high}" if high != low else "")
    return (f"{head} {_seq(first)} resets {_s(first.get('service', '?'))}  {len(resets)}{of}"
            f"{length} (sent {sent}, received {len(resets) - sent})  peers {_peers(resets)}"
            f"{span}")


def _top(signal, top):
    """The first thing to look at: a log signal's busiest path, a reset signal's peer."""
    top = top if isinstance(top, dict) else {}
    first = []
    key, field = (("paths", "path") if signal in (LOG_WRITES, LOG_BYTES) else ("peers", "peer"))
    items = top.get(key) if isinstance(top.get(key), list) else []
    if items and isinstance(items[0], dict):
        first.append(f"top {_s(items[0].get(field))}")
    idle = top.get("idle") if isinstance(top.get("idle"), list) else []
    if idle and isinstance(idle[0], dict):
        first.append(f"idle {_s(idle[0].get('bucket'))}")
    named = top.get("idle_timeouts") if isinstance(top.get("idle_timeouts"), list) else []
    if named and isinstance(named[0], dict) and named[0].get("line"):
        first.append(_s(named[0]["line"]))          # schema 1.9: the idle timeout named
    return "  " + ", ".join(first) if first else ""


def _alert(head, rec):
    signal = rec.get("signal") if isinstance(rec.get("signal"), str) else None
    if signal == LOG_LOSS_RISK:
        return _loss_alert(head, rec)
    if signal == LOG_LOST:
        return _lost_alert(head, rec)
    label = SIGNAL_LABELS.get(signal, _s(signal))
    service = _s(rec.get("service", "?"))
    rate = _per_s(signal, rec.get("rate"))
    if rec.get("state") == "close":
        dur = rec.get("duration_s")
        return (f"{head} {_seq(rec)} ALERT closed ({_s(rec.get('close_reason'))})  {label}  "
                f"{service}  now {rate}, peak {_per_s(signal, rec.get('peak'))}"
                f"{f' over {dur:.1f}s' if _num(dur) else ''}")
    ratio, baseline = rec.get("ratio"), rec.get("baseline")
    limit = rec.get("limit") if isinstance(rec.get("limit"), dict) else {}
    if rec.get("reason") == "new_service":
        why = "new service"
    elif rec.get("reason") == "above_host_limit":       # schema 1.9: over what the host takes
        what = limit.get("key") or limit.get("limit")
        why = f"over host limit {_s(what)}" if what else "over a host limit"
    elif rec.get("reason") == "above_profile" and _num(ratio):
        why = f"{ratio:.1f}x profile {_per_s(signal, baseline)}"
    elif _num(ratio):
        why = f"{ratio:.1f}x baseline {_per_s(signal, baseline)}"
    elif _num(baseline):
        why = f"baseline {_per_s(signal, baseline)}"
    else:
        why = "no baseline"
    return (f"{head} {_seq(rec)} ALERT  {label}  {service}  {rate} = {why} "
            f"(threshold {_per_s(signal, rec.get('threshold'))}){_top(signal, rec.get('top'))}")


def _counters(rec, names):
    return " ".join(f"{k}={rec[k]}" for k in names if _num(rec.get(k)) and rec[k])


def _stats(head, rec, every):
    notes = [(label, _counters(rec, names)) for label, names in
             (("undercount", _UNDERCOUNT), ("unattributed", _UNATTRIBUTED),
              ("not recorded", _UNSAMPLED))]
    notes = "; ".join(f"{label}: {text}" for label, text in notes if text)
    if not every:
        return f"{head} {_seq(rec)} {notes}" if notes else None
    def val(k, fmt):
        return fmt(rec[k]) if _num(rec.get(k)) else "?"
    line = (f"{head} {_seq(rec)} stats  interval {val('interval', lambda v: f'{v:.2f}s')}  "
            f"drain {val('drain_ms', lambda v: f'{v:.1f}ms')}  keys {val('keys', str)}/"
            f"{val('map_capacity', str)}  cpu {val('cpu_s', lambda v: f'{v:.3f}s')}  "
            f"rss {val('rss_bytes', format_bytes)}")
    return f"{line}  {notes}" if notes else line


def _dropped(head, rec):
    n = rec.get("dropped")
    what = plural(n, "record") if _num(n) else "? records"
    return (f"{head} gap     {what} dropped for this reader "
            f"(it read too slowly; {rec.get('dropped_total', '?')} in all)")


def _other(head, rec):
    """A record type from a newer minor version: its scalar fields, as they are."""
    fields = " ".join(f"{escape(str(k))}={_s(v)}" for k, v in rec.items()
                      if k not in ("v", "type", "ts", "host") and isinstance(v, (str, int, float)))
    return f"{head} {_s(rec.get('type'))}  {fields}".rstrip()


_FORMATS = {"meta": _meta, "rate": _rate, "reset": _reset, "alert": _alert,
            "dropped": _dropped}


def format_record(rec, every_stats=False):
    """One line for a person, or None for a healthy stats record (unless every_stats)."""
    head = f"{_when(rec.get('ts'))} {_s(rec.get('host', '?'))}"
    kind = rec.get("type") if isinstance(rec.get("type"), str) else None
    if kind == "stats":
        return _stats(head, rec, every_stats)
    return _FORMATS.get(kind, _other)(head, rec)
