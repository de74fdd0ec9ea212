"""Every setting of surgewatch: a TOML file, checked completely at load, then overridden
by the test-seam environment variables and the command-line flags, through one path:
config file -> env_seams() -> Overrides.apply(). Keys and defaults: docs/operations.md.
"""
from collector.config.file import _check_owner, load_file
from collector.config.flags import ENV_SEAMS, Overrides, env_seams
from collector.config.parse import parse, parse_listen
from collector.config.schema import (
    DEFAULT_PATH,
    HOST_ROOT,
    LOCK_FILE,
    RATE_MAX_PATHS,
    Config,
    ProbesConfig,
    PrometheusConfig,
    ResetsConfig,
    SegmentsConfig,
    SocketConfig,
)

__all__ = ["DEFAULT_PATH", "ENV_SEAMS", "HOST_ROOT", "LOCK_FILE", "RATE_MAX_PATHS", "Config",
           "Overrides", "ProbesConfig", "PrometheusConfig", "ResetsConfig", "SegmentsConfig",
           "SocketConfig", "_check_owner", "env_seams", "load", "parse", "parse_listen"]


def load(path=None, environ=None):
    """The config from `path` (None: DEFAULT_PATH, where a missing file means defaults),
    with the environment's test seams applied."""
    return env_seams(load_file(path), environ)
