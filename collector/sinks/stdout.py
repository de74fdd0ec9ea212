"""Records on stdout: the msgpack stream (docs/stream.md) or JSON lines."""
import errno
import io
import os
import stat
import sys

from collector.records.stream import StreamWriter
from collector.sinks.jsonout import dumps


def auto_format(stream):
    """(format, what stdout is) for outputs.stdout.format "auto": the msgpack stream when
    stdout is a pipe or a regular file (a reader asked for it: `run | ...`, `run > f`),
    else "none": a terminal, /dev/null, a socket (journald's stream under a unit) or a
    closed stdout. A stream without a descriptor is a caller's own: the stream."""
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return "msgpack", "a stream"
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return "none", "closed"
    if stat.S_ISFIFO(mode):
        return "msgpack", "a pipe"
    if stat.S_ISREG(mode):
        return "msgpack", "a file"
    if os.isatty(fd):
        return "none", "a terminal"
    if stat.S_ISSOCK(mode):
        return "none", "a socket"
    return "none", "not a pipe or a file"


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
