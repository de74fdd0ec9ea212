"""`surgewatch snapshot`: build the pipeline, run it for a window, show the result."""
import sys

from collector.aggregate.logrates import Window
from collector.errors import SurgewatchError


def probe_verdict(probe):
    return lambda dev, gen, ino, is_log: probe.set_verdict(dev, gen, ino, is_log)


def build_collector(rules, probe_kwargs=None):
    """The log-write pipeline, probe loaded and attached. Caller closes collector.probe."""
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
    probe.load()
    resolver.replay()
    return Collector(probe, resolver, services)


def run_snapshot(duration, interval, top, as_json, msgpack_path, rules, argv=()):
    from collector.sinks.jsonout import snapshot_json, write_json
    from collector.sinks.msgpackfile import MsgpackFileSink
    from collector.sinks.table import LiveTable

    sink = MsgpackFileSink(msgpack_path) if msgpack_path else None   # fail before loading
    table = None if as_json else LiveTable(sys.stdout)
    if table is not None and table.live:
        sys.stdout.write("surgewatch: compiling and attaching probes...\r")
        sys.stdout.flush()
    collector = build_collector(rules)
    try:
        meta = collector.meta(interval, "snapshot", argv)
        if sink:
            sink.write_interval([meta])
        window = Window()
        title = f"surgewatch snapshot {meta['host']}"
        state = {"next": interval}

        def on_interval(rates, stats):
            window.add_interval(rates, stats["interval"], stats)
            if sink:
                sink.write_interval(rates + [stats])

        def on_tick(elapsed):
            if table is not None and table.live:
                rows = window.rows(top=min(top, table.max_rows(top)))
                table.update(rows, title, countdown_s=max(0.0, duration - elapsed),
                             elapsed_s=window.duration_s)

        collector.run(duration, interval, on_interval, on_tick=on_tick)
    finally:
        collector.probe.close()
        if sink:
            sink.close()
    if table is not None:
        table.final(window.rows(top=top), title, elapsed_s=window.duration_s)
        st = window.stats() or {}
        lost = {k: st.get(k, 0) for k in ("unresolved_writes", "lost_writes", "lost_events")}
        if any(lost.values()):
            sys.stderr.write(
                f"surgewatch: note: {lost['unresolved_writes']} writes by processes gone before "
                f"their files could be identified, {lost['lost_writes']} writes not counted "
                f"(kernel map full), {lost['lost_events']} open events lost\n")
    else:
        write_json(snapshot_json(window, meta, top=top), sys.stdout)
