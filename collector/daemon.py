"""`surgewatch run`: the long-running collector.

Loads the config, opens the outputs (fails before the probes are compiled), builds the
log-write pipeline and streams records until SIGTERM/SIGINT: a `meta` record first, then
each interval's `rate` records and its `stats` record, to every output. SIGHUP re-reads
the config file and applies new log rules and outputs without touching the kernel's
counts. The daemon's own messages go to stderr (journald priority prefixes when stderr
is the journal), rate-limited so a persistent problem cannot flood its own log.
"""
import dataclasses
import errno
import os
import signal
import sys
import time

from collector import config as config_mod
from collector.errors import BadInput, SurgewatchError
from collector.stream import StreamWriter

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


# -- own messages --------------------------------------------------------------------
class StderrLog:
    """One line per message on stderr, at most `burst` per key and `per_minute` overall.

    Under journald (JOURNAL_STREAM names our stderr) each line starts with a syslog
    priority, "<4>...", which journald turns into the entry's level. Messages beyond the
    limits are counted and the count is shown on the next line that gets through.
    """

    PRIORITY = {"error": 3, "warning": 4, "notice": 5, "info": 6}

    def __init__(self, stream=None, clock=time.monotonic, burst=3, refill_s=60.0,
                 per_minute=30, journald=None):
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.burst, self.refill_s, self.per_minute = burst, refill_s, per_minute
        self.journald = _stderr_is_journal(self.stream) if journald is None else journald
        self._keys = {}                 # key -> [tokens, last refill time]
        self._recent = []               # times of lines written in the last minute
        self.suppressed = 0

    def _allowed(self, key, now):
        self._recent = [t for t in self._recent if now - t < 60.0]
        tokens, last = self._keys.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) / self.refill_s)
        ok = tokens >= 1 and len(self._recent) < self.per_minute
        self._keys[key] = [tokens - 1 if ok else tokens, now]
        if ok:
            self._recent.append(now)
        return ok

    def __call__(self, level, msg, key=None):
        now = self.clock()
        if not self._allowed(key or msg, now):
            self.suppressed += 1
            return False
        if self.suppressed:
            msg += f" ({self.suppressed} earlier message{'s' if self.suppressed != 1 else ''}" \
                   " suppressed)"
            self.suppressed = 0
        msg = msg.replace("\n", "\\n")
        if self.journald:
            line = f"<{self.PRIORITY.get(level, 6)}>{msg}\n"
        else:
            line = f"surgewatch: {level}: {msg}\n"
        try:
            self.stream.write(line)
            self.stream.flush()
        except (OSError, ValueError):
            pass
        return True


def _stderr_is_journal(stream):
    want = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return want == f"{st.st_dev}:{st.st_ino}"


# -- stdout ---------------------------------------------------------------------------
class OutputClosed(Exception):
    """An output can no longer be written (its reader went away)."""


class StdoutSink:
    """Records on stdout: msgpack (the stream of docs/stream.md) or JSON lines."""

    name = "stdout"

    def __init__(self, fmt, stream=None):
        if fmt not in ("msgpack", "json"):
            raise ValueError(f"stdout format {fmt!r}")
        self.format = fmt
        stream = stream if stream is not None else sys.stdout
        self._buf = getattr(stream, "buffer", stream)
        self._writer = StreamWriter(self._buf) if fmt == "msgpack" else None

    def write_interval(self, records):
        from collector.sinks.jsonout import dumps

        try:
            if self._writer is not None:
                self._writer.write_many(records)
            else:
                data = "".join(dumps(r, indent=None) + "\n" for r in records)
                self._buf.write(data.encode("utf-8"))
            self._buf.flush()
        except BrokenPipeError:
            raise OutputClosed("stdout: its reader closed the pipe") from None
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.EBADF):
                raise OutputClosed(f"stdout: {e.strerror}") from None
            raise

    def close(self):
        try:
            self._buf.flush()
        except (OSError, ValueError):
            pass


# -- configuration + flags ------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Overrides:
    """Command-line flags; each one given wins over the config file (also after SIGHUP)."""

    interval: float | None = None
    format: str | None = None
    segments_dir: str | None = None
    no_segments: bool = False
    log_dirs: tuple = ()
    log_globs: tuple = ()
    journald_sockets: tuple = ()
    socket_path: str | None = None
    no_socket: bool = False
    prometheus_listen: str | None = None
    no_prometheus: bool = False
    no_resets: bool = False

    def apply(self, cfg):
        from collector.host.logdest import LogRules

        if self.interval is not None:
            cfg = cfg.replace(interval=float(self.interval))
        if self.format is not None:
            cfg = cfg.replace(stdout_format=self.format)
        if self.segments_dir is not None:
            if not self.segments_dir.startswith("/"):
                raise BadInput(f"--segments-dir: {self.segments_dir!r} is not an absolute path")
            cfg = cfg.with_segments(dir=self.segments_dir, enabled=True)
        if self.no_segments:
            cfg = cfg.with_segments(enabled=False)
        if self.socket_path is not None:
            if not self.socket_path.startswith("/"):
                raise BadInput(f"--socket: {self.socket_path!r} is not an absolute path")
            cfg = cfg.replace(socket=dataclasses.replace(cfg.socket, path=self.socket_path,
                                                         enabled=True))
        if self.no_socket:
            cfg = cfg.replace(socket=dataclasses.replace(cfg.socket, enabled=False))
        if self.prometheus_listen is not None:
            try:
                config_mod.parse_listen(self.prometheus_listen)
            except ValueError as e:
                raise BadInput(f"--prometheus: {e}") from None
            cfg = cfg.replace(prometheus=dataclasses.replace(
                cfg.prometheus, listen=self.prometheus_listen, enabled=True))
        if self.no_prometheus:
            cfg = cfg.replace(prometheus=dataclasses.replace(cfg.prometheus, enabled=False))
        if self.no_resets:
            cfg = cfg.replace(resets=dataclasses.replace(cfg.resets, enabled=False))
        if self.log_dirs or self.log_globs or self.journald_sockets:
            r = cfg.log_rules
            cfg = cfg.replace(log_rules=LogRules(
                dirs=self.log_dirs or r.dirs, globs=self.log_globs or r.globs,
                journald_sockets=self.journald_sockets or r.journald_sockets))
        return cfg


def load_config(path, overrides):
    cfg = overrides.apply(config_mod.load(path))
    if cfg.stdout_format == "none" and not cfg.segments.enabled and not cfg.socket.enabled \
            and not cfg.prometheus.enabled:
        raise BadInput(f"{cfg.path}: outputs: nothing to write to (stdout format is none and "
                       "segments, socket and prometheus are disabled); enable one of them")
    return cfg


def _rules_key(rules):
    return (rules.dirs, rules.globs, rules.journald_sockets)


def apply_rules(collector, rules):
    """Judge log destinations by new rules from now on; the kernel's counts are untouched.

    Every verdict (ours and the kernel's copy) is forgotten, then the files open on the
    host are judged again. Writes meanwhile to an inode without a verdict are counted
    and judged at the next drain, as at start, so nothing is lost across the switch.
    """
    collector.resolver.change_rules(rules)
    collector.probe.clear_verdicts()
    return collector.resolver.replay()


# -- the daemon -----------------------------------------------------------------------
class Daemon:
    def __init__(self, config_path, overrides, argv=(), log=None, stdout=None,
                 build=None):
        self.config_path = config_path
        self.overrides = overrides
        self.argv = list(argv)
        self.log = log or StderrLog()
        self._stdout = stdout
        self._build = build
        self.cfg = None
        self.outputs = {}             # name -> sink
        self.collector = None
        self._stop_signal = None
        self._reload = False
        self.failed = None

    # outputs ---------------------------------------------------------------------
    def _make_output(self, name, cfg):
        if name == "stdout":
            fmt = cfg.stdout_format
            if fmt == "none":
                return None
            stream = self._stdout if self._stdout is not None else sys.stdout
            if fmt == "msgpack" and _isatty(stream):
                self.log("notice", "stdout is a terminal: writing JSON lines instead of "
                                   "msgpack (use --format json, or pipe stdout)")
                fmt = "json"
            return StdoutSink(fmt, stream)
        if name == "segments":
            if not cfg.segments.enabled:
                return None
            from collector.sinks.segments import SegmentStore

            s = cfg.segments
            return SegmentStore(s.dir, max_segment_bytes=s.max_segment_bytes,
                                max_segment_age_s=s.max_segment_age_s,
                                max_total_bytes=s.max_total_bytes,
                                on_drop=self._segment_drop)
        if name == "socket":
            if not cfg.socket.enabled:
                return None
            from collector.sinks.unixsock import UnixSocketSink

            s = cfg.socket
            return UnixSocketSink(s.path, mode=s.mode, queue_records=s.queue_records)
        if name == "prometheus":
            if not cfg.prometheus.enabled:
                return None
            from collector.sinks.prometheus import PrometheusSink

            return PrometheusSink.from_config(cfg.prometheus)
        raise ValueError(name)

    OUTPUTS = ("stdout", "segments", "socket", "prometheus")

    @staticmethod
    def _output_key(name, cfg):
        return cfg.stdout_format if name == "stdout" else getattr(cfg, name)

    def _open_outputs(self, cfg, old_cfg=None):
        """{name: sink} for cfg, keeping the sinks whose settings did not change."""
        out = {}
        try:
            for name in self.OUTPUTS:
                if old_cfg is not None and name in self.outputs and \
                        self._output_key(name, cfg) == self._output_key(name, old_cfg):
                    out[name] = self.outputs[name]
                    continue
                if name in ("socket", "prometheus") and name in self.outputs:
                    # holds a path/port the new one may need: closed first
                    self.outputs.pop(name).close()
                sink = self._make_output(name, cfg)
                if sink is not None:
                    if self.collector is not None and hasattr(sink, "set_meta"):
                        sink.set_meta(self.meta)
                    out[name] = sink
        except BaseException:
            for name, sink in out.items():
                if self.outputs.get(name) is not sink:
                    sink.close()
            raise
        return out

    def _segment_drop(self, n, err):
        if n == 0:                      # a problem the store recovered from, nothing lost
            self.log("warning", f"segment store: {err}", key="segment-problem")
            return
        self.log("warning", f"segment store: {n} record{'s' if n != 1 else ''} dropped: {err}; "
                            "the drop is counted in the next stats record",
                 key="segment-drop")

    def _write(self, records):
        for name, sink in list(self.outputs.items()):
            try:
                sink.write_interval(records)
            except OutputClosed as e:
                self.log("warning", f"{e}; output disabled")
                del self.outputs[name]
                sink.close()
        if not self.outputs:
            self.failed = "no outputs left (the last one was closed)"

    def _drop_privileges(self):
        if self._build is None:              # a real pipeline (tests inject fakes)
            _drop_privileges_after_load(self.log)

    # signals ---------------------------------------------------------------------
    def _on_stop(self, signum, _frame):
        self._stop_signal = signum

    def _on_hup(self, _signum, _frame):
        self._reload = True

    def _should_stop(self):
        return self._stop_signal is not None or self.failed is not None

    def reload(self):
        self._reload = False
        try:
            new = load_config(self.config_path, self.overrides)
        except SurgewatchError as e:
            self.log("error", f"reload refused, the running config stays: {e}", key="reload")
            return False
        if new.interval != self.cfg.interval:
            self.log("notice", f"interval {new.interval:g}s takes effect at restart; "
                               f"keeping {self.cfg.interval:g}s", key="reload-interval")
            new = new.replace(interval=self.cfg.interval)
        if new.resets != self.cfg.resets:
            self.log("notice", "resets settings take effect at restart; keeping the running "
                               "ones", key="reload-resets")
            new = new.replace(resets=self.cfg.resets)
        try:
            outputs = self._open_outputs(new, self.cfg)
        except SurgewatchError as e:
            self.log("error", f"reload refused, the running config stays: {e}", key="reload")
            return False
        for name, sink in self.outputs.items():
            if outputs.get(name) is not sink:
                sink.close()
        self.outputs = outputs
        if _rules_key(new.log_rules) != _rules_key(self.cfg.log_rules):
            apply_rules(self.collector, new.log_rules)
        self.collector.max_paths = new.rate_max_paths
        self.cfg = new
        self.log("notice", f"reloaded {new.path}", key="reloaded")
        return True

    # main ------------------------------------------------------------------------
    def run(self):
        """Run until a stop signal; returns the exit code."""
        self.cfg = load_config(self.config_path, self.overrides)
        self._lock = acquire_run_lock()       # held until this process exits
        old = {s: signal.signal(s, self._on_stop) for s in STOP_SIGNALS}
        old[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)
        try:
            self.outputs = self._open_outputs(self.cfg)
            return self._run()
        finally:
            for sink in self.outputs.values():
                try:
                    sink.close()
                except Exception as e:   # closing must not hide the reason we stopped
                    self.log("error", f"closing {getattr(sink, 'name', sink)}: {e}")
            for s, h in old.items():
                signal.signal(s, h)
            self._lock.close()                 # releases the flock

    def _run(self):
        build = self._build
        if build is None:
            from collector.snapshot import build_collector

            def build(rules):
                return build_collector(rules, resets=self.cfg.resets.enabled)
        self.collector = build(self.cfg.log_rules)
        self.collector.max_paths = self.cfg.rate_max_paths
        stage = getattr(self.collector, "resets", None)
        if stage is not None:
            stage.set_max_records(self.cfg.resets.max_records)
        self._drop_privileges()
        try:
            # the first interval starts before the meta record announces the probes: a
            # write made after it is never dropped as a load-time count
            self.collector.begin()
            self.meta = self.collector.meta(self.cfg.interval, "run", self.argv)
            for sink in self.outputs.values():
                if hasattr(sink, "set_meta"):
                    sink.set_meta(self.meta)
            self._write([self.meta])
            self.log("info", f"collecting every {self.cfg.interval:g}s to "
                             f"{', '.join(self.outputs) or 'nothing'}", key="start")

            from collector.alertstage import AlertStage      # docs/detection.md
            self.alerts = AlertStage(self.meta["host"], self.log)

            def on_interval(rates, stats):
                seg = self.outputs.get("segments")
                if seg is not None:
                    stats["segment_dropped_records"] = seg.take_dropped()
                resets = list(getattr(self.collector, "last_reset_records", ()) or ())
                if stage is not None:
                    prom = self.outputs.get("prometheus")
                    if prom is not None:
                        prom.add_reset_details(stage.last)
                alerts = self.alerts.interval(rates, stats, resets)
                self._write(rates + resets + alerts + [stats])

            def on_tick(_elapsed):
                if self._reload:
                    self.reload()

            # no clock tick: a signal's byte on the wake-up pipe ends the wait at once, so
            # an idle daemon wakes once per interval (docs/performance.md, idle)
            with _signal_wakeup() as wakeup_fd:
                self.collector.run(None, self.cfg.interval, on_interval, on_tick=on_tick,
                                   tick_s=None if wakeup_fd is not None else 0.1,
                                   should_stop=self._should_stop,
                                   wakeup_fd=wakeup_fd)
        finally:
            _detach_all(self.collector)
        if self.failed:
            self.log("error", f"stopping: {self.failed}")
            return 1
        name = signal.Signals(self._stop_signal).name if self._stop_signal else "?"
        self.log("info", f"stopped by {name}; probes detached", key="stop")
        return 0


LOCK_PATH = "/run/surgewatch/surgewatch.lock"


def acquire_run_lock(path=None):
    """One `surgewatch run` per host: an flock on LOCK_PATH (SURGEWATCH_LOCK_FILE overrides
    it, for tests). The kernel releases it when the process dies, also by SIGKILL, so a
    stale file never blocks a restart. Returns the open file; keep it open."""
    import fcntl

    path = path or os.environ.get("SURGEWATCH_LOCK_FILE") or LOCK_PATH
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise BadInput(f"{path}: cannot open the run lock: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            other = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            other = ""
        os.close(fd)
        raise BadInput(f"another surgewatch run is running (pid {other or '?'}, lock {path}); "
                       "stop it first, or give this one another SURGEWATCH_LOCK_FILE") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return os.fdopen(fd, "r+b", buffering=0)


def _drop_privileges_after_load(log):
    """Probes are loaded: keep only what reading /proc needs (collector/privileges.py)."""
    from collector import privileges

    try:
        kept = privileges.drop_to()
    except OSError as e:
        log("warning", f"could not drop capabilities after loading the probes: {e}",
            key="caps")
        return
    log("info", "capabilities after loading the probes: "
                f"{', '.join(privileges.names(kept)) or 'none'}", key="caps")


def _detach_all(collector):
    """Detach the log-write probe and the reset probe (if loaded): the attachment fds of
    both closed in one parallel batch (each close waits for an RCU grace period), then
    the maps."""
    from collector.probes.loader import close_fds_parallel

    probes = [collector.probe]
    stage = getattr(collector, "resets", None)
    if stage is not None:
        probes.append(stage.probe)
    handovers = [h for h in (getattr(p, "handover", None) for p in probes) if h is not None]
    close_fds_parallel([fd for h in handovers for fd in h.links.values()])
    for h in handovers:
        h.links = {}
    for p in probes:
        p.close()


class _signal_wakeup:
    """A non-blocking pipe as signal.set_wakeup_fd for the duration (main thread only;
    elsewhere None: the caller then waits with a timeout)."""

    def __enter__(self):
        self._fds, self._old = None, None
        try:
            r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            self._old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except ValueError:                      # not the main thread
            os.close(r)
            os.close(w)
            return None
        self._fds = (r, w)
        return r

    def __exit__(self, *exc):
        if self._fds is not None:
            signal.set_wakeup_fd(self._old if self._old is not None else -1)
            for fd in self._fds:
                os.close(fd)


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def run_daemon(config_path, overrides, argv=()):
    return Daemon(config_path, overrides, argv).run()
