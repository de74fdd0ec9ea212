"""Record types that flow between stages, and the stream schema version.

probes -> host: LogWriteCount (raw, per process+fd+file, one interval)
host -> aggregate: LogWrite (enriched with service and path)
aggregate -> sinks: stream records (dicts, see docs/stream.md)
"""
from dataclasses import dataclass

# "MAJOR.MINOR": readers accept any minor of their major, refuse a newer major.
SCHEMA_VERSION = "1.0"
SCHEMA_MAJOR = 1


@dataclass(frozen=True)
class LogWrite:
    """Log writes by one process to one log destination during one interval."""

    pid: int          # tgid
    comm: str         # process name as the kernel had it at the first counted write
    service: str      # systemd unit, container id, else comm
    path: str         # log destination: file path, or "journald:<socket path>"
    writes: int       # successful write-family calls
    bytes: int        # bytes those calls wrote
