"""`surgewatch snapshot`: build the pipeline, run it for a window, show the result."""
import sys

from collector.aggregate.logrates import Window
from collector.aggregate.resets import ResetWindow
from collector.errors import EnvironmentProblem
from collector.host.sockdiag import inventory, socket_owners, tcp_connections_all_namespaces
from collector.pipeline.build import build_collector
from collector.sinks.jsonout import snapshot_json, write_json
from collector.sinks.msgpackfile import MsgpackFileSink
from collector.sinks.resets_view import render_reset_columns, render_resets, resets_json
from collector.sinks.table import LiveTable


def run_snapshot(duration, interval, top, as_json, msgpack_path, rules, argv=(),
                 resets_view=False, idle_threshold=300.0, probes=None):
    sink = MsgpackFileSink(msgpack_path) if msgpack_path else None   # fail before loading
    table = None if as_json else LiveTable(sys.stdout)
    if table is not None and table.live:
        sys.stdout.write("surgewatch: compiling and attaching probes...\r")
        sys.stdout.flush()
    collector = build_collector(rules, resets=True, probes=probes)
    window, rwindow = Window(), ResetWindow()
    try:
        collector.begin()            # before the meta record says the probes are attached
        meta = collector.meta(interval, "snapshot", argv)
        if sink:
            sink.write_interval([meta])
        title = f"surgewatch snapshot {meta['host']}"

        def on_interval(iv):
            window.add_interval([r for r in iv.rates if r["log_writes"] or r["paths"]],
                                iv.stats["interval"], iv.stats)
            if collector.resets is not None:
                rwindow.add_interval(iv.resets, iv.stats["interval"],
                                     iv.stats.get("resets_events_lost", 0))
                for service, ev in iv.reset_events:
                    rwindow.add_event(service, _peer(ev))
            if sink:
                sink.write_interval(iv.rates + iv.reset_records + [iv.stats])

        def on_tick(elapsed):
            if table is not None and table.live:
                rows = window.rows(top=min(top, table.max_rows(top)))
                table.update(rows, title, countdown_s=max(0.0, duration - elapsed),
                             elapsed_s=window.duration_s)

        collector.run(duration, interval, on_interval, on_tick=on_tick)
    finally:
        collector.close()
        if sink:
            sink.close()
    inventory_ = _inventory(collector.services, idle_threshold) \
        if (resets_view or table is None) else None
    watched_resets = collector.resets is not None
    if table is not None:
        table.final(window.rows(top=top), title, elapsed_s=window.duration_s)
        if watched_resets:
            sys.stdout.write("\n" + (render_resets(rwindow, top, inventory_, idle_threshold)
                                     if resets_view else render_reset_columns(rwindow, top))
                             + "\n")
        _loss_note(window.stats() or {})
    else:
        doc = snapshot_json(window, meta, top=top)
        doc["started"] = collector.started_wall     # the window's real start (after loading)
        if watched_resets:
            doc["resets"] = resets_json(rwindow, inventory_, idle_threshold, top)
        write_json(doc, sys.stdout)


def _loss_note(stats):
    lost = {k: stats.get(k, 0) for k in ("unresolved_writes", "lost_writes", "lost_events")}
    if any(lost.values()):
        sys.stderr.write(
            f"surgewatch: note: {lost['unresolved_writes']} writes by processes gone before "
            f"their files could be identified, {lost['lost_writes']} writes not counted "
            f"(kernel map full), {lost['lost_events']} open events lost\n")


def _peer(ev):
    return f"[{ev.raddr}]:{ev.rport}" if ev.family == 10 else f"{ev.raddr}:{ev.rport}"


def _inventory(services, idle_threshold):
    """Open TCP connections per service (sock_diag), or None when it cannot be read."""
    try:
        conns = tcp_connections_all_namespaces(services.procfs)
    except EnvironmentProblem as e:
        sys.stderr.write(f"surgewatch: note: no connection inventory: {e}\n")
        return None
    owners = socket_owners(services.procfs)
    return inventory(conns, owners, lambda pid, comm: services.resolve(pid, comm),
                     threshold_s=idle_threshold)
