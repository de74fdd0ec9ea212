"""surgewatch: per-service log-write rates and TCP resets from kernel probes."""

__version__ = "0.1.0"
