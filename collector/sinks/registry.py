"""The daemon's outputs by name, node_exporter style: each is a factory of its config
section; the set opens them, keeps the unchanged ones across a reload, writes each
interval to all and drops one whose reader went away."""
import importlib
import sys

from collector.sinks.stdout import OutputClosed, StdoutSink, auto_format


def _sink(module, name):
    """A sink class, its module imported when the output is first opened: an output that
    is off costs the daemon no memory (the HTTP server alone is ~3 MB)."""
    return getattr(importlib.import_module(f"collector.sinks.{module}"), name)


def _stdout(cfg, ctx):
    fmt = cfg.stdout_format
    stream = ctx.stdout if ctx.stdout is not None else sys.stdout
    if fmt == "auto":           # the default: by hand as under the unit, unless piped
        fmt, what = auto_format(stream)
        ctx.log("info", f"stdout is {what}: " + (
            "the msgpack stream goes there (--format none: not)" if fmt != "none" else
            "no records on it (they go to the outputs below; --format json or msgpack to "
            "write them there)"), key="stdout-auto")
    if fmt == "none":
        return None
    if fmt == "msgpack" and _isatty(stream):
        ctx.log("notice", "stdout is a terminal: writing JSON lines instead of msgpack "
                          "(use --format json, or pipe stdout)")
        fmt = "json"
    return StdoutSink(fmt, stream)


def _segments(cfg, ctx):
    s = cfg.segments
    if not s.enabled:
        return None
    return _sink("segments", "SegmentStore")(s.dir, max_segment_bytes=s.max_segment_bytes,
                                             max_segment_age_s=s.max_segment_age_s,
                                             max_total_bytes=s.max_total_bytes,
                                             on_drop=ctx.segment_drop)


def _socket(cfg, _ctx):
    s = cfg.socket
    if not s.enabled:
        return None
    return _sink("unixsock", "UnixSocketSink")(
        s.path, mode=s.mode, queue_records=s.queue_records, max_subscribers=s.max_subscribers,
        max_subscribers_per_uid=s.max_subscribers_per_uid, stall_timeout_s=s.stall_timeout_s)


def _prometheus(cfg, _ctx):
    pc = cfg.prometheus
    if not pc.enabled:
        return None
    sink = _sink("prometheus", "PrometheusSink").from_config(pc)
    if sink.server is not None:
        sink.server.set_limits(pc.max_connections, pc.request_timeout_s)
    return sink


# name -> (factory(config, context) -> sink or None, the config part it depends on);
# in this order records are written
FACTORIES = {
    "stdout": (_stdout, lambda cfg: cfg.stdout_format),
    "segments": (_segments, lambda cfg: cfg.segments),
    "socket": (_socket, lambda cfg: cfg.socket),
    "prometheus": (_prometheus, lambda cfg: cfg.prometheus),
}
# outputs that hold an address (a socket path, a port) a second instance cannot take while
# they run: a reload that keeps the address but changes other settings reconfigures the
# running sink in place (sink.reconfigure(part)) instead of opening a second one
HELD_ADDRESS = {"socket": lambda cfg: cfg.socket.path,
                "prometheus": lambda cfg: cfg.prometheus.listen}


def where(name, sink, cfg):
    """Where an open output writes, for the daemon's start-up and reload lines: the
    address a reader uses (the bound port, the socket path, the directory)."""
    if name == "stdout":
        return {"msgpack": "msgpack stream", "json": "JSON lines"}.get(sink.format, sink.format)
    if name == "segments":
        return f"{cfg.segments.dir} (seg-*.msgpack, at most {_size(cfg.segments.max_total_bytes)})"
    if name == "socket":
        return f"unix socket {cfg.socket.path} (mode {cfg.socket.mode:04o})"
    if name == "prometheus":
        return f"{sink.url}/metrics"
    return name


def _size(n):
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.4g} {unit}"
        n /= 1024
    return f"{n:.4g} GiB"


class OutputContext:
    """What factories need from their owner: its log, its stdout, a segment-drop hook."""

    def __init__(self, log, stdout=None):
        self.log, self.stdout = log, stdout

    def segment_drop(self, n, err):
        if n == 0:                      # a problem the store recovered from, nothing lost
            self.log("warning", f"segment store: {err}", key="segment-problem")
            return
        self.log("warning", f"segment store: {n} record{'s' if n != 1 else ''} dropped: "
                            f"{err}; the drop is counted in the next stats record",
                 key="segment-drop")


class Outputs:
    def __init__(self, ctx):
        self.ctx = ctx
        self.sinks = {}         # name -> open sink
        self.opened = []        # names the last open() opened anew (not kept)
        self.reconfigured = []  # names the last open() reconfigured in place
        self.meta = None

    def __iter__(self):
        return iter(self.sinks)

    def __bool__(self):
        return bool(self.sinks)

    def get(self, name):
        return self.sinks.get(name)

    def open(self, cfg, old_cfg=None):
        """Open the outputs of cfg, atomically: the sinks whose settings did not change
        since old_cfg are kept; one that keeps its address (socket path, listen port) but
        changes other settings is reconfigured in place, once everything else opened; new
        ones open while the old still run, and the replaced ones are closed only once all
        new ones opened. On failure nothing running was touched (docs/reliability.md,
        "Hostile local user": a neighbour holding the new port cannot take the old away)."""
        new, in_place = {}, []
        try:
            for name, (factory, part) in FACTORIES.items():
                old = self.sinks.get(name)
                if old is not None and old_cfg is not None:
                    if part(cfg) == part(old_cfg):
                        new[name] = old
                        continue
                    held = HELD_ADDRESS.get(name)
                    if held is not None and getattr(part(cfg), "enabled", False) and \
                            held(cfg) == held(old_cfg) and hasattr(old, "reconfigure"):
                        new[name] = old
                        in_place.append((old, part(cfg)))
                        continue
                sink = factory(cfg, self.ctx)
                if sink is not None:
                    if self.meta is not None and hasattr(sink, "set_meta"):
                        sink.set_meta(self.meta)
                    new[name] = sink
        except BaseException:
            for name, sink in new.items():
                if self.sinks.get(name) is not sink:
                    sink.close()
            raise
        for sink, part in in_place:
            sink.reconfigure(part)
        self.reconfigured = [n for n, s in new.items() if any(s is k for k, _ in in_place)]
        for name, sink in self.sinks.items():
            if new.get(name) is not sink:
                sink.close()
        self.opened = [n for n, sink in new.items() if self.sinks.get(n) is not sink]
        self.sinks = new

    def where(self, cfg, names=None):
        """[(name, where it writes)] of the open outputs (or of `names` among them)."""
        return [(n, where(n, s, cfg)) for n, s in self.sinks.items()
                if names is None or n in names]

    def set_meta(self, meta):
        self.meta = meta
        for sink in self.sinks.values():
            if hasattr(sink, "set_meta"):
                sink.set_meta(meta)

    def take_stats(self):
        """What the open outputs lost since the last call, as `stats` fields ({} when
        none can lose records): an output that can says so with its own take_stats();
        `run` hands this to the collector (Collector.report_from), which puts it in the
        next interval's `stats` record, so every output reads the same record."""
        out = {}
        for sink in self.sinks.values():
            if hasattr(sink, "take_stats"):
                out.update(sink.take_stats())
        return out

    def write(self, records):
        """Every open sink gets the records; one whose reader went away is dropped."""
        for name, sink in list(self.sinks.items()):
            try:
                sink.write_interval(records)
            except OutputClosed as e:
                self.ctx.log("warning", f"{e}; output disabled")
                del self.sinks[name]
                sink.close()

    def close(self):
        for sink in self.sinks.values():
            try:
                sink.close()
            except Exception as e:   # closing must not hide the reason we stopped
                self.ctx.log("error", f"closing {getattr(sink, 'name', sink)}: {e}")
        self.sinks = {}


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
