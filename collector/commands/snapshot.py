"""`surgewatch snapshot`: build the pipeline, run it for a window, show the result.

On a terminal the window runs in the live view (views/live_view.py); the final text
table follows it, and is all a pipe or file gets; --json prints JSON instead."""
import sys
from contextlib import nullcontext

from collector.aggregate.alert_lines import format_event
from collector.aggregate.alerts import OPEN, AlertEvent, Detector
from collector.aggregate.loglost import LOG_LOST
from collector.aggregate.logrates import Window
from collector.aggregate.lossrisk import OPEN as RISK_OPEN, RiskEvent, format_risk_event
from collector.aggregate.load import LoadWindow
from collector.aggregate.resets import ResetWindow
from collector.aggregate.selection import Selection
from collector.errors import EnvironmentProblem
from collector.host.sockdiag import inventory, socket_owners, tcp_connections_all_namespaces
from collector.pipeline.alerts import AlertStage, open_journald_drops
from collector.pipeline.build import build_collector
from collector.sinks.jsonout import snapshot_json, write_json
from collector.sinks.msgpackfile import MsgpackFileSink
from collector.views.load_view import load_json, render_load
from collector.views.resets_view import render_reset_columns, render_resets, resets_json
from collector.views.table import LiveTable
from collector.views.text import escape, format_rate, plural

LIVE_TICK_S = 0.1       # how often the live view reads keys and redraws if needed
DETAIL_TOP = 5          # services in the live view's resets detail


def run_snapshot(duration, interval, top, as_json, msgpack_path, rules, argv=(),
                 resets_view=False, idle_threshold=300.0, probes=None, selection=None,
                 alerts=None, capacity=()):
    """capacity: the config's [capacity] globs, for the loss-risk check (docs/detection.md,
    "Loss risk"), run on every interval as the daemon runs it."""
    selection = selection or Selection()
    sink = MsgpackFileSink(msgpack_path) if msgpack_path else None   # fail before loading
    table = None if as_json else LiveTable(sys.stdout)
    live = table is not None and table.live
    if live:
        table.progress("surgewatch: compiling and attaching probes...")
    try:
        collector = build_collector(rules, resets=True, probes=probes)
    finally:        # wiped: the final table's header (or an error) starts on that line
        if table is not None:
            table.clear_progress()
    window, rwindow, lwindow = Window(), ResetWindow(), LoadWindow()
    model = None
    notes = _Notes()    # the checks' problems: said after the live view, not over it
    root = getattr(collector, "host_root", None)      # collector/host/hostroot.py
    files = root.files if root is not None else "/"
    drops = open_journald_drops(files, log=lambda _level, line, key=None: notes.append(line))
    selected = set()    # services of the selected rate records: whose open risks to say
    try:
        collector.begin()            # before the meta record says the probes are attached
        meta = collector.meta(interval, "snapshot", argv)
        # the daemon's alert stage, its steps one by one (docs/detection.md): no log lines
        stage = AlertStage(meta["host"], capacity=capacity, host_root=files, drops=drops,
                           detector=warm_detector(alerts), problems=notes)
        detector, risk, lost = stage.detector, stage.loss_risk, stage.lost
        if sink:
            sink.write_interval([meta])
        title = f"surgewatch snapshot {meta['host']}"
        view = _live_view(title, top) if live else None
        model = _live_model() if view is not None else None

        def on_interval(iv):
            s = iv.stats
            # before the selection: the limits are the service's and the destination's,
            # whatever -s/-p show; it annotates iv.rates (`loss_risk`) for all outputs
            risk_events = stage.check_risk(iv.rates, s)
            lost_events = stage.count_lost(iv.rates, s)
            sel = selection.select(iv.rates, iv.resets, iv.reset_records, iv.reset_events,
                                   writes=collector.last_writes if selection.pids else None,
                                   seq=s["seq"], interval_s=s["interval"])
            _carry_risk(iv.rates, sel.rates)
            selected.update(r["service"] for r in sel.rates)
            window.add_interval([r for r in sel.rates if r["log_writes"] or r["paths"]],
                                s["interval"], s)
            if collector.resets is not None:
                rwindow.add_interval(sel.resets, s["interval"], s.get("resets_events_lost", 0))
                lwindow.add_interval(sel.rates, s["interval"])
                for service, ev in sel.reset_events:
                    rwindow.add_event(service, _peer(ev), ev, float(s["ts"]))
            events = []
            if s["interval"] >= interval / 2:   # a cut-short last one (q): rates too noisy
                events = stage.judge(sel.rates, s, sel.reset_records)
            if model is not None:
                model.add_interval(sel.rates, sel.resets, s["interval"],
                                   [(a.service, a.signal) for a in detector.open_alerts()]
                                   + [(name, LOG_LOST) for name in lost.open])
            if sink:      # the stream keeps every record: -s/-p select what is shown
                raised = stage.records(s, events, risk_events, lost_events)
                sink.write_interval(iv.rates + iv.reset_records + raised + [iv.stats])

        def on_tick(elapsed):
            view.show(model, window.duration_s, max(0.0, duration - elapsed),
                      detail=lambda: render_resets(rwindow, DETAIL_TOP))

        with view if view is not None else nullcontext():
            collector.run(duration, interval, on_interval,
                          on_tick=on_tick if view is not None else None,
                          tick_s=LIVE_TICK_S if view is not None else None,
                          should_stop=lambda: view is not None and view.quit)
        # the connections as the window ends: before detaching the probes (about 1 s),
        # in which pooled connections the idle timeout named is about to reset may go
        inventory_ = selection.inventory(_inventory(collector.services, idle_threshold)) \
            if (resets_view or table is None) else None
    finally:
        collector.close()
        if drops is not None:
            drops.close()
        if sink:
            sink.close()
    watched_resets = collector.resets is not None
    if table is not None:
        rows = window.rows(top=top)
        table.final(rows, title, elapsed_s=window.duration_s, counts=True,
                    risks=_shown_marks(risk.marks, rows))
        if watched_resets:
            sys.stdout.write("\n" + (render_resets(rwindow, top, inventory_, idle_threshold)
                                     if resets_view else render_reset_columns(rwindow, top))
                             + "\n")
            sys.stdout.write("\n" + render_load(lwindow, top) + "\n")
        _alerts_note(detector)
        _risks_note(risk, selected)
        _lost_note(lost.totals, selected)
        _loss_note(window.stats() or {})
    else:
        doc = snapshot_json(window, meta, top=top)
        doc["started"] = collector.started_wall     # the window's real start (after loading)
        if watched_resets:
            doc["resets"] = resets_json(rwindow, inventory_, idle_threshold, top)
            doc["load"] = load_json(lwindow, top)
        write_json(doc, sys.stdout)
    for note in notes:
        sys.stderr.write(f"surgewatch: note: {escape(note)}\n")


def warm_detector(config=None):
    """The alert detector (docs/detection.md) as a snapshot uses it: a snapshot has no
    history, so the detector starts past its own warm-up and every service is judged as
    the daemon judges one it has just met (the new-service floors, then, once learnt,
    its own baseline)."""
    detector = Detector(config)
    for _ in range(detector.config.warmup):
        detector.observe(0.0, 1.0, [])
    return detector


def _live_view(title, top):
    # imported here: rich costs start-up time that --json and pipes need not pay
    from collector.views.live_view import LiveView
    from collector.views.terminal_keys import open_keys
    return LiveView(title, top, keys=open_keys())


def _live_model():
    from collector.aggregate.live_rows import LiveModel
    return LiveModel()


def _alerts_note(detector):
    """Alerts open when the window ended, one line each on stderr (as the daemon logs
    them: signal, rate, baseline or floor, top path or peer)."""
    for a in detector.open_alerts():
        line = format_event(AlertEvent(OPEN, a, a.started))
        if a.rate <= a.threshold:   # open, yet "0 lines/s" alone reads as a false alarm
            line += (f"; peak {format_rate(a.peak)}/s, now below its threshold (it closes "
                     f"after {detector.config.close_after} intervals below)")
        sys.stderr.write(f"surgewatch: {escape(line)}\n")


class _Notes(list):
    """The alert stage's problems as snapshot says them: lines after the window, each
    once (collector/pipeline/alerts.py LogProblems is the daemon's)."""

    def warn(self, message):
        self.append(message)        # JournaldLimits says each once itself

    def failed(self, what, key, error):
        msg = f"{what} failed: {type(error).__name__}: {error}"   # a bug in a check must
        if msg not in self:                                      # not cost the snapshot
            self.append(msg)


def _carry_risk(rates, selected):
    """`loss_risk` and `log_lost` onto selected records rebuilt from the writes (-p): a
    service's risk and loss are the service's, whichever of its processes is shown."""
    for field in ("loss_risk", LOG_LOST):
        by_service = {r["service"]: r[field] for r in rates if r.get(field)}
        for r in selected:
            if field not in r and r.get("service") in by_service:
                r[field] = by_service[r["service"]]


def _lost_note(totals, services):
    """What journald dropped during the window, one line per selected service."""
    for service, n in sorted(totals.items()):
        if service in services and n:
            sys.stderr.write(f"surgewatch: lost: {escape(service)}: journald dropped {n} "
                             "messages during the snapshot\n")


def _shown_marks(marks, rows):
    """LossRisk.marks of the rows shown: the LOSS column appears only for one of them."""
    shown = {(r.service, r.path) for r in rows if not r.folded}
    return {k: v for k, v in marks.items() if k in shown}


def _risks_note(risk, services):
    """Loss risks open when the window ended, one line each on stderr (as the daemon
    logs them), of the selected services."""
    for service, key in risk.open_risks():
        if service in services:
            r = risk.open[(service, key)]
            line = format_risk_event(RiskEvent(RISK_OPEN, r, r.started))
            sys.stderr.write(f"surgewatch: {escape(line)}\n")


def _loss_note(stats):
    parts = [(stats.get("unresolved_writes", 0), "write",
              "by processes gone before their files could be identified"),
             (stats.get("lost_writes", 0), "write", "not counted (kernel map full)"),
             (stats.get("lost_events", 0), "open event", "lost")]
    said = [f"{plural(n, noun)} {what}" for n, noun, what in parts if n]   # no "0 ..." noise
    if said:
        sys.stderr.write(f"surgewatch: note: {', '.join(said)}\n")


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
