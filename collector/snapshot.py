"""`surgewatch snapshot`: build the pipeline, run it for a window, show the result."""
import gc
import sys

from collector.aggregate.logrates import Window


def probe_verdict(probe):
    return lambda dev, gen, ino, is_log: probe.set_verdict(dev, gen, ino, is_log)


def build_collector(rules, probe_kwargs=None, resets=False):
    """The log-write pipeline, probe loaded and attached. Caller closes collector.probe
    (and collector.resets when resets=True loaded the TCP reset probe).

    Each probe compiles in its own loader child (collector/probes/loader.py), both at
    once: on two cores start-up takes the longer compile, not the sum."""
    from collector.host.cgroups import CgroupIndex
    from collector.host.destinations import DestinationResolver
    from collector.host.procfs import ProcFS
    from collector.host.services import ServiceResolver
    from collector.host.unixsock import journald_stream_clients
    from collector.probes import kernel
    from collector.probes.logwrites import LogWriteProbe
    from collector.runtime import Collector

    kernel.require_environment()
    procfs = ProcFS()
    services = ServiceResolver(procfs, CgroupIndex())
    holder = {}
    probe = LogWriteProbe(on_open=lambda ev: holder["resolver"].note_open(ev),
                          **(probe_kwargs or {}))
    resolver = DestinationResolver(procfs, rules, probe_verdict(probe),
                                   journald_stream_clients)
    holder["resolver"] = resolver
    disabled = {}
    pending = probe.start_load()
    reset_load = _start_resets(disabled) if resets else None
    try:
        probe.finish_load(pending)
    except BaseException:
        if reset_load is not None:
            reset_load[1].cancel()
        raise
    stage = None
    if reset_load is not None:
        try:
            stage = _reset_stage(procfs, services, reset_load, disabled)
        except BaseException:
            probe.close()
            raise
    resolver.replay()
    gc.freeze()        # what loading built lives for the whole run: never rescan it
    collector = Collector(probe, resolver, services, resets=stage)
    collector.disabled_probes = disabled      # name -> reason, shown in the meta record
    return collector


def _start_resets(disabled):
    """(probe, pending load) of the TCP reset probe, or None (with a note) when its
    plan cannot be made here."""
    from collector.errors import ProbeUnavailable
    from collector.probes.resets import ResetProbe

    probe = ResetProbe()
    try:
        return probe, probe.start_load()
    except ProbeUnavailable as e:
        _resets_unavailable(e, disabled)
        return None


def _resets_unavailable(e, disabled):
    from collector.probes.resets import ResetProbe

    sys.stderr.write(f"surgewatch: note: TCP resets not watched: {e}\n")
    disabled[ResetProbe.name] = str(e)


def _reset_stage(procfs, services, reset_load, disabled):
    """The TCP reset probe and its enrichment, or None (with a note) when it cannot run."""
    import socket

    from collector.errors import ProbeUnavailable
    from collector.host.sockdiag import ListenerLookup, ResetAttributor
    from collector.resetstage import ResetStage

    probe, pending = reset_load
    try:
        probe.finish_load(pending)
    except ProbeUnavailable as e:
        _resets_unavailable(e, disabled)
        return None
    return ResetStage(probe, ResetAttributor(services, ListenerLookup(procfs)),
                      socket.gethostname())


def run_snapshot(duration, interval, top, as_json, msgpack_path, rules, argv=(),
                 resets_view=False, idle_threshold=300.0):
    from collector.sinks.jsonout import snapshot_json, write_json
    from collector.sinks.msgpackfile import MsgpackFileSink
    from collector.sinks.table import LiveTable

    sink = MsgpackFileSink(msgpack_path) if msgpack_path else None   # fail before loading
    table = None if as_json else LiveTable(sys.stdout)
    if table is not None and table.live:
        sys.stdout.write("surgewatch: compiling and attaching probes...\r")
        sys.stdout.flush()
    from collector.aggregate.resets import ResetWindow

    collector = build_collector(rules, resets=True)
    rwindow = ResetWindow()
    try:
        collector.begin()            # before the meta record says the probes are attached
        meta = collector.meta(interval, "snapshot", argv)
        if sink:
            sink.write_interval([meta])
        window = Window()
        title = f"surgewatch snapshot {meta['host']}"

        def on_interval(rates, stats):
            window.add_interval([r for r in rates if r["log_writes"] or r["paths"]],
                                stats["interval"], stats)
            if collector.resets is not None:
                rwindow.add_interval(collector.resets.last, stats["interval"],
                                     stats.get("resets_events_lost", 0))
                for service, ev in collector.resets.last_events:
                    rwindow.add_event(service, _peer(ev))
            if sink:
                sink.write_interval(rates + collector.last_reset_records + [stats])

        def on_tick(elapsed):
            if table is not None and table.live:
                rows = window.rows(top=min(top, table.max_rows(top)))
                table.update(rows, title, countdown_s=max(0.0, duration - elapsed),
                             elapsed_s=window.duration_s)

        collector.run(duration, interval, on_interval, on_tick=on_tick)
    finally:
        collector.probe.close()
        if collector.resets is not None:
            collector.resets.close()
        if sink:
            sink.close()
    inventory = _inventory(collector.services, idle_threshold) \
        if (resets_view or table is None) else None
    if table is not None:
        table.final(window.rows(top=top), title, elapsed_s=window.duration_s)
        if collector.resets is not None:
            from collector.sinks.resets_view import render_reset_columns, render_resets

            sys.stdout.write("\n" + (render_resets(rwindow, top, inventory, idle_threshold)
                                     if resets_view else render_reset_columns(rwindow, top))
                             + "\n")
        st = window.stats() or {}
        lost = {k: st.get(k, 0) for k in ("unresolved_writes", "lost_writes", "lost_events")}
        if any(lost.values()):
            sys.stderr.write(
                f"surgewatch: note: {lost['unresolved_writes']} writes by processes gone before "
                f"their files could be identified, {lost['lost_writes']} writes not counted "
                f"(kernel map full), {lost['lost_events']} open events lost\n")
    else:
        doc = snapshot_json(window, meta, top=top)
        doc["started"] = collector.started_wall     # the window's real start (after loading)
        if collector.resets is not None:
            from collector.sinks.resets_view import resets_json

            doc["resets"] = resets_json(rwindow, inventory, idle_threshold, top)
        write_json(doc, sys.stdout)


def _peer(ev):
    return f"[{ev.raddr}]:{ev.rport}" if ev.family == 10 else f"{ev.raddr}:{ev.rport}"


def _inventory(services, idle_threshold):
    """Open TCP connections per service (sock_diag), or None when it cannot be read."""
    from collector.errors import EnvironmentProblem
    from collector.host.sockdiag import (inventory, socket_owners,
                                         tcp_connections_all_namespaces)

    try:
        conns = tcp_connections_all_namespaces(services.procfs)
    except EnvironmentProblem as e:
        sys.stderr.write(f"surgewatch: note: no connection inventory: {e}\n")
        return None
    owners = socket_owners(services.procfs)
    return inventory(conns, owners, lambda pid, comm: services.resolve(pid, comm),
                     threshold_s=idle_threshold)
