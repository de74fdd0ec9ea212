"""`surgewatch run`: the long-running collector.

Loads the config, opens the outputs (fails before the probes are compiled), builds the
pipeline and streams records until SIGTERM/SIGINT: a `meta` record first, then each
interval's `rate`, `reset` and `alert` records and its `stats` record, to every output.
SIGHUP re-reads the config file and applies new log rules and outputs without touching
the kernel's counts. The daemon's own messages go to stderr through
collector.commands.process.StderrLog (rate limited, journald priorities).
"""
import os
import signal
import sys

from collector import config as config_mod
from collector.aggregate.priors import Profile
from collector.commands.process import (
    StderrLog,
    acquire_run_lock,
    drop_privileges_after_load,
    raise_open_files_limit,
    require_load_privileges,
)
from collector.config import HOST_ROOT
from collector.errors import BadInput, SurgewatchError
from collector.pipeline.alerts import AlertStage, open_journald_drops
from collector.pipeline.build import apply_rules, build_collector, rules_key
from collector.sinks.registry import OutputContext, Outputs
from collector.sinks.stdout import auto_format

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def read_alerts_profile(path):
    """The [alerts] profile (collector.aggregate.priors.Profile), or None when none is
    set; BadInput (one line, exit 2) when it is not a readable profile."""
    if not path:
        return None
    from collector.commands.profile_file import read_profile   # the gate's reader and checks
    return Profile(read_profile(path), path)


def load_config(path, overrides, stdout=None):
    """The config `run` uses: the file with the flags applied, refused when nothing
    would be written anywhere (stdout: where "auto" would write, default sys.stdout)."""
    cfg = overrides.apply(config_mod.load(path))
    fmt, what = cfg.stdout_format, "none"
    if fmt == "auto":
        fmt, kind = auto_format(stdout if stdout is not None else sys.stdout)
        what = f"auto and stdout is {kind}"
    if fmt == "none" and not cfg.segments.enabled and not cfg.socket.enabled \
            and not cfg.prometheus.enabled:
        raise BadInput(f"{cfg.path}: outputs: nothing to write to (stdout format is {what} "
                       "and segments, socket and prometheus are disabled); enable one of "
                       "them, or --format json")
    return cfg


class Daemon:
    def __init__(self, config_path, overrides, argv=(), log=None, stdout=None,
                 build=None):
        """build(log_rules) -> collector: a test seam (fakes without a kernel); the real
        one loads the probes and drops capabilities afterwards."""
        self.config_path = config_path
        self.overrides = overrides
        self.argv = list(argv)
        self.log = log or StderrLog()
        self._build = build
        self.cfg = None
        self.outputs = Outputs(OutputContext(self.log, stdout))
        self.collector = None
        self.alert_stage = None          # built at start: [capacity] follows reloads
        self.profile = None              # [alerts] profile, read at start
        self._stop_signal = None
        self._reload = False
        self.failed = None

    def _write(self, records):
        self.outputs.write(records)
        if not self.outputs:
            self.failed = "no outputs left (the last one was closed)"

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
            new = load_config(self.config_path, self.overrides, self.outputs.ctx.stdout)
        except SurgewatchError as e:
            self.log("error", f"reload refused, the running config stays: {e}", key="reload")
            return False
        new = self._restart_only(new)
        try:
            self.outputs.open(new, self.cfg)
        except SurgewatchError as e:
            self.log("error", f"reload refused, the running config stays: {e}", key="reload")
            return False
        if rules_key(new.log_rules) != rules_key(self.cfg.log_rules):
            apply_rules(self.collector, new.log_rules)
        self.collector.max_paths = new.rate_max_paths
        if self.alert_stage is not None:
            self.alert_stage.set_capacity(new.capacity)
        self.cfg = new
        self.log("notice", f"reloaded {new.path}", key="reloaded")
        self._log_where(self.outputs.opened)
        return True

    def _log_where(self, names):
        """One line per output opened: where a reader finds it."""
        for name, where in self.outputs.where(self.cfg, names):
            self.log("info", f"output {name}: {where}", key=f"output-{name}")

    def _restart_only(self, new):
        """new with the settings that only a restart applies kept as they run."""
        if new.interval != self.cfg.interval:
            self.log("notice", f"interval {new.interval:g}s takes effect at restart; "
                               f"keeping {self.cfg.interval:g}s", key="reload-interval")
            new = new.replace(interval=self.cfg.interval)
        for part in ("resets", "probes", "alerts", "alerts_profile", "lock_file"):
            if getattr(new, part) != getattr(self.cfg, part):
                self.log("notice", f"{part} settings take effect at restart; keeping the "
                                   "running ones", key=f"reload-{part}")
                new = new.replace(**{part: getattr(self.cfg, part)})
        return new

    # main ------------------------------------------------------------------------
    def run(self):
        """Run until a stop signal; returns the exit code."""
        self.cfg = load_config(self.config_path, self.overrides, self.outputs.ctx.stdout)
        self.profile = read_alerts_profile(self.cfg.alerts_profile)   # before the probes
        if self._build is None:
            # before the lock: an unprivileged run must hear about privileges, not about
            # a lock file it cannot create under /run
            require_load_privileges()
        self._lock = acquire_run_lock(self.cfg.lock_file)   # held until this process exits
        # before any fd budget is computed (the pidfd watch takes half the soft limit)
        self.nofile = raise_open_files_limit(self.log)
        old = {s: signal.signal(s, self._on_stop) for s in STOP_SIGNALS}
        old[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._on_hup)
        try:
            self.outputs.open(self.cfg)
            return self._run()
        finally:
            self.outputs.close()
            for s, h in old.items():
                signal.signal(s, h)
            self._lock.close()                 # releases the flock

    def _load(self):
        if self._build is not None:
            return self._build(self.cfg.log_rules)
        collector = build_collector(self.cfg.log_rules, resets=self.cfg.resets.enabled,
                                    probes=self.cfg.probes, host_root=self.cfg.host_root)
        root = collector.host_root
        if root.note and self.cfg.host_root != HOST_ROOT:
            self.log("warning", f"host_root {root.note}: reading the host's files in our own "
                                "root", key="host-root")
        drop_privileges_after_load(self.log)
        return collector

    def _run(self):
        self.collector = self._load()
        self.collector.max_paths = self.cfg.rate_max_paths
        self.collector.report_from(self.outputs)   # what outputs lost: in the next stats
        if self.collector.resets is not None:
            self.collector.resets.set_max_records(self.cfg.resets.max_records)
        try:
            # the first interval starts before the meta record announces the probes: a
            # write made after it is never dropped as a load-time count
            self.collector.begin()
            meta = self.collector.meta(self.cfg.interval, "run", self.argv)
            self.outputs.set_meta(meta)
            self._write([meta])
            self.log("info", f"collecting every {self.cfg.interval:g}s to "
                             f"{', '.join(self.outputs) or 'nothing'} ({_source(self.cfg)}, "
                             f"lock {self.cfg.lock_file})", key="start")
            self._log_where(self.outputs.opened)
            root = getattr(self.collector, "host_root", None)
            files = root.files if root else "/"
            drops = open_journald_drops(files, self.log)
            self.alert_stage = alerts = AlertStage(meta["host"], self.log, self.cfg.alerts,
                                                   capacity=self.cfg.capacity,  # docs/detection.md
                                                   host_root=files, drops=drops,
                                                   profile=self.profile)
            if self.profile is not None:
                self.log("info", f"alerts: {len(self.profile)} services of profile "
                                 f"{self.cfg.alerts_profile} judged from their first "
                                 "interval", key="alerts-profile")

            def on_interval(iv):
                raised = alerts.interval(iv.rates, iv.stats, iv.reset_records)
                self._write(iv.rates + iv.reset_records + raised + [iv.stats])

            def on_tick(_elapsed):
                if self._reload:
                    self.reload()

            # no clock tick: a signal's byte on the wake-up pipe ends the wait at once, so
            # an idle daemon wakes once per interval (docs/performance.md, idle)
            with _SignalWakeup() as wakeup_fd:
                self.collector.run(None, self.cfg.interval, on_interval, on_tick=on_tick,
                                   tick_s=None if wakeup_fd is not None else 0.1,
                                   should_stop=self._should_stop, wakeup_fd=wakeup_fd)
        finally:
            if self.alert_stage is not None:
                self.alert_stage.close()
            self.collector.close()
        if self.failed:
            self.log("error", f"stopping: {self.failed}")
            return 1
        name = signal.Signals(self._stop_signal).name if self._stop_signal else "?"
        self.log("info", f"stopped by {name}; probes detached", key="stop")
        return 0


def _source(cfg):
    return f"config {cfg.path}" if os.path.exists(cfg.path) else \
        f"default settings: no {cfg.path}"


class _SignalWakeup:
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


def run_daemon(config_path, overrides, argv=()):
    return Daemon(config_path, overrides, argv).run()
