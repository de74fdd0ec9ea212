"""Overrides of the config file: command-line flags, and the environment variables that
are test seams (docs/reliability.md), read here and nowhere else."""
import dataclasses
import os

from collector.config.parse import parse_listen
from collector.config.schema import WRITE_HOOKS
from collector.errors import BadInput
from collector.host.logdest import LogRules


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
                parse_listen(self.prometheus_listen)
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


# environment variable -> what it overrides; test seams for the tests and benchmarks
ENV_SEAMS = {
    "SURGEWATCH_LOCK_FILE": "lock_file",
    "SURGEWATCH_WRITE_HOOK": "probes.write_hook",
    "SURGEWATCH_LOAD_TIMEOUT": "probes.load_timeout_s",
    "SURGEWATCH_PROBE_CACHE": "probes.cache_dir",
}


def env_seams(cfg, environ=None):
    """cfg with the test-seam variables of the environment applied."""
    env = os.environ if environ is None else environ
    if env.get("SURGEWATCH_LOCK_FILE"):
        cfg = cfg.replace(lock_file=env["SURGEWATCH_LOCK_FILE"])
    hook = env.get("SURGEWATCH_WRITE_HOOK")
    if hook:
        if hook not in WRITE_HOOKS:
            raise BadInput(f"SURGEWATCH_WRITE_HOOK={hook!r} is not one of "
                           f"{', '.join(WRITE_HOOKS)}; unset it or fix it")
        cfg = cfg.replace(probes=dataclasses.replace(cfg.probes, write_hook=hook))
    timeout = env.get("SURGEWATCH_LOAD_TIMEOUT")
    if timeout:
        try:
            seconds = float(timeout)
        except ValueError:
            raise BadInput(f"SURGEWATCH_LOAD_TIMEOUT={timeout!r} is not a number of "
                           "seconds") from None
        cfg = cfg.replace(probes=dataclasses.replace(cfg.probes, load_timeout_s=seconds))
    if "SURGEWATCH_PROBE_CACHE" in env:       # set and empty: no cache
        cache = env["SURGEWATCH_PROBE_CACHE"]
        if cache and not cache.startswith("/"):
            raise BadInput(f"SURGEWATCH_PROBE_CACHE={cache!r} is not an absolute path; "
                           "unset it or fix it")
        cfg = cfg.replace(probes=dataclasses.replace(cfg.probes, cache_dir=cache))
    return cfg
