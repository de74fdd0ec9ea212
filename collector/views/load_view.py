"""`surgewatch snapshot`'s TCP load section (pure: LoadWindow in, text or JSON out): per
service its connections, TCP bytes out and log writes per connection over the window,
the figures the fleet gate compares (docs/detection.md, "Basis")."""
from collector.views.text import escape, format_bytes, format_rate

NAME = 28


def _name(s):
    s = escape(s)
    return s if len(s) <= NAME else s[: NAME - 3] + "..."


def _per_conn(n, conns):
    return f"{n / conns:.3g}" if conns else "-"


def render_load(window, top=20):
    rows = window.rows(top)
    if not rows:
        return "TCP load: none"
    d = max(window.duration_s, 1e-9)
    out = "TCP OUT/S" if window.bytes_counted else ""
    lines = ["TCP load (connections accepted + connected, log writes per connection):",
             f"{'SERVICE':<{NAME}}  {'CONNS':>7}  {'CONNS/S':>8}  {out:>10}  {'WRITES/CONN':>11}"]
    for name, t in rows:
        tcp = f"{format_bytes(t.tcp_bytes / d)}" if window.bytes_counted else ""
        lines.append(f"{_name(name):<{NAME}}  {t.conns:>7}  {format_rate(t.conns / d):>8}  "
                     f"{tcp:>10}  {_per_conn(t.log_writes, t.conns):>11}")
    return "\n".join(lines)


def load_json(window, top=20):
    d = max(window.duration_s, 1e-9)
    out = []
    for name, t in window.rows(top):
        row = {"service": name, "conns_accepted": t.accepted, "conns_connected": t.connected,
               "conns_per_s": t.conns / d, "log_writes": t.log_writes}
        if window.bytes_counted:
            row["tcp_bytes_out"] = t.tcp_bytes
            row["tcp_bytes_out_per_s"] = t.tcp_bytes / d
        if t.conns:
            row["log_writes_per_conn"] = t.log_writes / t.conns
        out.append(row)
    return out
