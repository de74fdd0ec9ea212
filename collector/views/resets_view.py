"""Terminal views of TCP resets for `surgewatch snapshot` (pure: window in, text out).

render_reset_columns(): per service sent/s and received/s (printed under the log table).
render_resets(): `snapshot --resets`: top services, peers, states, kinds, reasons, the
idle-before-reset histogram drawn as bars, the idle timeout named (per peer, and with the
inventory how many connections to that peer are about to be reset) and the
open-connection inventory.
Host-supplied names are escaped (views.table.escape) so they cannot break the layout.
"""
from collector.aggregate.idle_hist import IDLE_BUCKETS, bucket_label, idle_buckets
from collector.aggregate.idletimeout import at_risk
from collector.aggregate.resets import idle_mode
from collector.views.text import escape, plural

BAR_WIDTH = 40


def _name(s, width):
    s = escape(s)
    return s if len(s) <= width else s[: width - 3] + "..."


def render_reset_columns(window, top=20):
    rows = window.top(top)
    if not rows:
        return "TCP resets: none"
    d = max(window.duration_s, 1e-9)
    lines = [f"{'SERVICE':<28}  {'RST SENT/S':>10}  {'RST RECV/S':>10}  {'SENT':>7}  {'RECV':>7}"]
    for r in rows:
        lines.append(f"{_name(r.service, 28):<28}  {r.sent / d:>10.2f}  {r.received / d:>10.2f}  "
                     f"{r.sent:>7}  {r.received:>7}")
    return "\n".join(lines)


def histogram_lines(hist, width=BAR_WIDTH):
    """The non-empty range of an idle histogram as labelled bars."""
    n = len(hist)
    used = [i for i, v in enumerate(hist) if v]
    if not used:
        return ["  (no resets with a known idle time)"]
    peak = max(hist)
    out = []
    for i in range(used[0], used[-1] + 1):
        bar = "#" * max(1 if hist[i] else 0, round(hist[i] * width / peak))
        out.append(f"  {bucket_label(i, n):>15} | {bar:<{width}} {hist[i]}")
    return out


def _tally(counter, limit=6):
    items = sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))[:limit]
    return ", ".join(f"{escape(str(k))} {v}" for k, v in items) or "-"


def render_resets(window, top=10, inventory=None, idle_threshold_s=300.0, title="TCP resets"):
    d = max(window.duration_s, 1e-9)
    t = window.totals()
    lines = [f"{title}: {t['resets_sent']} sent, {t['resets_received']} received "
             f"in {window.duration_s:.1f}s"]
    if window.events_lost:
        lines.append(f"  ({plural(window.events_lost, 'reset event')} lost: peers incomplete; "
                     "counts exact)")
    for r in window.top(top):
        pids = ",".join(str(p) for p in sorted(r.pids)[:4]) or "-"
        lines.append("")
        lines.append(f"{_name(r.service, 40)}  pids {pids}  sent {r.sent} ({r.sent / d:.2f}/s)  "
                     f"received {r.received} ({r.received / d:.2f}/s)")
        lines.append(f"  kinds:   {_tally(r.kinds)}")
        lines.append(f"  states:  {_tally(r.states)}")
        if r.reasons:
            lines.append(f"  reasons: {_tally(r.reasons)}")
        peers = window.peers.get(r.service)
        if peers:
            lines.append(f"  peers:   {_tally(peers, 5)}")
        mode = idle_mode(r.idle_hist)
        note = f"  idle before reset (mode {bucket_label(mode[0], len(r.idle_hist))})" if mode \
            else "  idle before reset"
        if r.idle_unknown:
            note += f"; {r.idle_unknown} with no idle time (no socket / not connected)"
        lines.append(note + ":")
        lines.extend(histogram_lines(r.idle_hist))
        lines.extend(f"  idle timeout: {escape(line)}"
                     for line in idle_timeout_lines(window, r.service, inventory))
    if inventory is not None:
        lines.append("")
        lines.extend(render_inventory(inventory, idle_threshold_s, top))
    return "\n".join(lines)


def _idle_timeouts(window, service, inventory):
    """[(IdleVerdict, at-risk count or None)] of one service: None without an inventory."""
    rows = inventory.get(service, ()) if inventory is not None else None
    return [(v, None if rows is None else at_risk(v, rows))
            for v in window.idle.verdicts(service)]


def idle_timeout_lines(window, service, inventory=None):
    """The idle timeout named, one line per peer (docs/detection.md)."""
    return [v.line(n) for v, n in _idle_timeouts(window, service, inventory)]


def render_inventory(inventory, idle_threshold_s, top=10, per_service=5):
    total = sum(len(v) for v in inventory.values())
    risky = sum(1 for v in inventory.values() for r in v if r["at_risk"])
    lines = [f"Open TCP connections: {total}, {risky} idle >= {idle_threshold_s:g}s (at risk "
             f"of an idle reset)"]
    order = sorted(inventory.items(),
                   key=lambda kv: (-sum(r["at_risk"] for r in kv[1]), -len(kv[1]), kv[0]))
    for service, rows in order[:top]:
        n_risk = sum(r["at_risk"] for r in rows)
        lines.append(f"  {_name(service, 40)}  {len(rows)} open, {n_risk} at risk")
        for r in rows[:per_service]:
            idle = "-" if r["idle_s"] is None else f"{r['idle_s']:.1f}s"
            flag = "  AT RISK" if r["at_risk"] else ""
            lines.append(f"    {r['pid']:>7} {escape(r['local']):>24} -> {escape(r['remote']):<24} "
                         f"{r['state']:<11} idle {idle}{flag}")
    return lines


def resets_json(window, inventory=None, idle_threshold_s=None, top=None):
    """The resets part of `snapshot --json`: window totals, what each idle_hist index
    counts (idle_buckets) and per-service detail."""
    d = max(window.duration_s, 1e-9)
    services = []
    for r in window.top(top or len(window.services) or 1):
        doc = r.as_dict()
        doc["resets_sent_per_s"] = r.sent / d
        doc["resets_received_per_s"] = r.received / d
        doc["peers"] = dict(window.peers.get(r.service, {}))
        doc["idle_timeouts"] = [v.as_dict(n) for v, n in
                                _idle_timeouts(window, r.service, inventory)]
        services.append(doc)
    totals = window.totals()
    out = {"duration_s": window.duration_s, **totals, "events_lost": window.events_lost,
           "idle_buckets": idle_buckets(len(totals["idle_hist"]) or IDLE_BUCKETS),
           "services": services}
    if inventory is not None:
        out["idle_threshold_s"] = idle_threshold_s
        out["connections"] = inventory
    return out
